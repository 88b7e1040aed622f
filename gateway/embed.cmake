# cmake -DIN=<file> -DOUT=<c file> -P embed.cmake: the file's bytes as
# `const char gateway_openapi_json[]` and its length, byte for byte (hex, so no
# escaping questions and no size limit of string literals).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){32})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUT}" "/* Generated from gateway/openapi.json by gateway/embed.cmake: do not edit. */\n"
    "#include <stddef.h>\n"
    "const char gateway_openapi_json[] = {\n    ${bytes}0x00};\n"
    "const size_t gateway_openapi_json_len = ${len};\n")
