# The fleet manifest (deploy/fleet.conf) for CMake: which programs the build has.
#   FLEET_SERVICES       the services' short names (order, product, user): each is
#                        built from services/<name>/ (its CMakeLists.txt)
#   FLEET_PROGRAMS       every program's CMake target (order-svc, ..., gateway)
#   FLEET_PROGRAM_FILES  $<TARGET_FILE:...> of each program, for tests that start
#                        the whole fleet
# Editing the manifest re-runs the configuration.
set(FLEET_CONF ${CMAKE_SOURCE_DIR}/deploy/fleet.conf)
set_property(DIRECTORY ${CMAKE_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${FLEET_CONF})
file(STRINGS ${FLEET_CONF} _fleet_lines REGEX "^[a-z]")
set(FLEET_SERVICES)
set(FLEET_PROGRAMS)
set(FLEET_PROGRAM_FILES)
foreach(_line IN LISTS _fleet_lines)
    string(REGEX MATCHALL "[^ \t]+" _cols "${_line}")
    list(GET _cols 0 _name)
    list(GET _cols 1 _program)
    list(GET _cols 2 _grpc)
    if(NOT _grpc STREQUAL "-")
        list(APPEND FLEET_SERVICES ${_name})
    endif()
    list(APPEND FLEET_PROGRAMS ${_program})
    list(APPEND FLEET_PROGRAM_FILES $<TARGET_FILE:${_program}>)
endforeach()

# shop_service(NAME [LIBS ...]) in services/<NAME>/CMakeLists.txt: the service's logic
# as the static library <NAME>_core (every src/*.c but main.c, its headers public to
# the unit tests in tests/unit/<NAME>/), and the program <NAME>-svc (src/main.c and
# migrations/<NAME>/ embedded) linking it.
function(shop_service name)
    cmake_parse_arguments(S "" "" "LIBS" ${ARGN})
    file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.c)
    list(REMOVE_ITEM sources ${CMAKE_CURRENT_SOURCE_DIR}/src/main.c)
    add_library(${name}_core STATIC ${sources})
    target_include_directories(${name}_core PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
    target_link_libraries(${name}_core PUBLIC common ${S_LIBS})
    add_executable(${name}-svc src/main.c)
    target_link_libraries(${name}-svc PRIVATE ${name}_core)
    shop_embed_migrations(${name}-svc ${name} ${CMAKE_SOURCE_DIR}/migrations/${name})
endfunction()
