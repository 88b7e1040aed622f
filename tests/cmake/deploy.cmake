# The container deployment (deploy/docker-compose.yml, deploy/docker/Dockerfile),
# checked against the programs of this build without a Docker engine: the compose
# file's variables against each program's --help, the Dockerfile's stages against
# the CMake targets and the libraries the binaries link, ports, dependencies,
# healthchecks, topics and addresses (tests/deploy/test_compose.py). Needs no
# infrastructure; python3-yaml parses the compose file.
# Every program of the fleet manifest (deploy/fleet.conf: its second column).
set(FLEET_CONF ${CMAKE_SOURCE_DIR}/deploy/fleet.conf)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${FLEET_CONF})
file(STRINGS ${FLEET_CONF} fleet_lines REGEX "^[a-z]")
set(fleet_program_files)
foreach(line IN LISTS fleet_lines)
    string(REGEX REPLACE "^[^ \t]+[ \t]+([^ \t]+).*" "\\1" program "${line}")
    list(APPEND fleet_program_files $<TARGET_FILE:${program}>)
endforeach()
add_test(NAME test_deploy_compose
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_compose.py
                 ${fleet_program_files})
set_tests_properties(test_deploy_compose PROPERTIES LABELS "unit;deploy" TIMEOUT 300)

# The fleet manifest (deploy/fleet.conf) against its readers (deploy/fleet.py,
# deploy/local/fleet.sh), the compose file and the local stack's dev ports
# (tests/deploy/test_fleet_manifest.py). Needs no build and no infrastructure.
add_test(NAME test_deploy_fleet_manifest
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy/test_fleet_manifest.py)
set_tests_properties(test_deploy_fleet_manifest PROPERTIES LABELS "unit;deploy" TIMEOUT 120)
