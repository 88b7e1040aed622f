# protoc-c code generation into the build tree (nothing generated is committed).
#
# shop_protobuf_c(<target> <proto_root> <proto files...>) builds a static library
# <target> from the generated .pb-c.c files; its include directory is the generated
# root, so code includes "shop/order/v1/order_service.pb-c.h".

find_program(PROTOC_C_EXECUTABLE NAMES protoc-c protoc-gen-c REQUIRED)

function(shop_protobuf_c target proto_root)
    set(out_root "${CMAKE_CURRENT_BINARY_DIR}/gen")
    set(sources "")
    foreach(proto IN LISTS ARGN)
        file(RELATIVE_PATH rel "${proto_root}" "${proto}")
        string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
        set(c "${out_root}/${stem}.pb-c.c")
        set(h "${out_root}/${stem}.pb-c.h")
        add_custom_command(
            OUTPUT "${c}" "${h}"
            COMMAND ${CMAKE_COMMAND} -E make_directory "${out_root}"
            COMMAND ${PROTOC_C_EXECUTABLE} "--proto_path=${proto_root}" "--c_out=${out_root}" "${proto}"
            DEPENDS "${proto}"
            COMMENT "protoc-c ${rel}"
            VERBATIM)
        list(APPEND sources "${c}")
    endforeach()
    add_library(${target} STATIC ${sources})
    target_include_directories(${target} PUBLIC "${out_root}")
    target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUF_C)
    # Generated code is not ours to warn about; -Werror stays on for everything else.
    target_compile_options(${target} PRIVATE -w)
endfunction()
