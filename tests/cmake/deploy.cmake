# The container deployment (deploy/docker-compose.yml, deploy/docker/Dockerfile),
# checked against the programs of this build without a Docker engine: the compose
# file's variables against each program's --help, the Dockerfile's stages against
# the CMake targets and the libraries the binaries link, ports, dependencies,
# healthchecks, topics and addresses (tests/deploy/test_compose.py). Needs no
# infrastructure; python3-yaml parses the compose file.
add_test(NAME test_deploy_compose
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_compose.py
                 ${FLEET_PROGRAM_FILES})
set_tests_properties(test_deploy_compose PROPERTIES LABELS "unit;deploy" TIMEOUT 300)

# The fleet manifest (deploy/fleet.conf) against its readers (deploy/fleet.py,
# deploy/local/fleet.sh), the compose file and the local stack's dev ports
# (tests/deploy/test_fleet_manifest.py). Needs no build and no infrastructure.
add_test(NAME test_deploy_fleet_manifest
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_fleet_manifest.py)
set_tests_properties(test_deploy_fleet_manifest PROPERTIES LABELS "unit;deploy" TIMEOUT 120)

# The process contract of every service of the manifest, each alone on the test stack
# (tests/deploy/test_fleet_services.py): --help, migrations, /healthz, /readyz, gRPC
# Health SERVING, /metrics, SIGTERM → exit 0. A new service is covered without a line.
add_test(NAME test_fleet_services
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_fleet_services.py
                 ${FLEET_PROGRAM_FILES})
set_tests_properties(test_fleet_services PROPERTIES LABELS "integration;deploy" TIMEOUT 600)

# The Helm chart (deploy/helm/shop-fleet) with real tools and no cluster
# (tests/deploy/helm/run.sh): helm lint --strict and helm template with two values
# sets, every manifest decoded strictly into the Kubernetes API types and checked
# (tests/deploy/helm/k8scheck: probes, limits, non-root read-only containers, headless
# gRPC Services, a PDB and an HPA per Deployment, each container's variables against
# its program's --help), and a self-test that the checker refuses broken manifests.
# The first run builds helm from the Go module proxy (minutes); later runs reuse it.
add_test(NAME test_deploy_helm
         COMMAND /bin/bash ${CMAKE_CURRENT_SOURCE_DIR}/deploy/helm/run.sh ${FLEET_PROGRAM_FILES})
set_tests_properties(test_deploy_helm PROPERTIES LABELS "unit;deploy" TIMEOUT 900)
