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

# The compose file for real (tests/deploy/compose_e2e.sh, also `make compose-test`):
# Docker images built offline (debootstrap base, infrastructure from Debian packages and
# the cached Kafka jars, tests/deploy/compose.airgapped.yml), the stack up, the trust
# checks (secrets volumes per container; PostgreSQL, Redis and Kafka refusing plaintext,
# missing or wrong credentials and what the ACLs forbid), the REST purchase, order-svc scaled to 3 and product-svc to 2 with every replica reached through
# the running gateway, a replica killed, everything removed. Needs root (it installs
# docker.io and may start dockerd); skipped (77) with the reason when no engine can run.
add_test(NAME test_compose_e2e COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/deploy/compose_e2e.sh)
set_tests_properties(test_compose_e2e PROPERTIES LABELS "e2e;deploy;docker" TIMEOUT 2400
                     SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)

# The alert rules with Debian's promtool (tests/deploy/test_alert_rules.sh): `promtool
# check rules` on deploy/observability/prometheus/alerts.yml and `promtool test rules`
# on alerts_test.yml, which shows each alert firing and not firing. No infrastructure.
add_test(NAME test_alert_rules COMMAND /bin/bash ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_alert_rules.sh)
set_tests_properties(test_alert_rules PROPERTIES LABELS "unit;deploy" TIMEOUT 120)

# The fleet's metrics live (tests/deploy/test_observability.py): the services and the
# gateway on the test stack, each /metrics through `promtool check metrics`, process_*
# and shop_build_info, the alerted counters at 0 before any event, consumer lag per
# consumed topic, and every metric name of the alert rules and the Grafana dashboard
# (deploy/observability) exported by some program.
add_test(NAME test_observability
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_observability.py
                 -- ${FLEET_PROGRAM_FILES})
set_tests_properties(test_observability PROPERTIES LABELS "e2e;deploy" TIMEOUT 600)
