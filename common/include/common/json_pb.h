/*
 * json_pb: the one JSON ⇄ protobuf-c mapping of the REST API (and of shopctl's event
 * dumps, tools/shopctl), driven by the
 * generated descriptors (docs/architecture.md §5, docs/libraries.md "protobuf-c").
 *
 * The rules, which gateway/openapi.json documents for clients:
 *   - JSON names are the proto field names (snake_case).
 *   - Messages are JSON objects, repeated fields are arrays; JSON null for a
 *     message field means "absent".
 *   - 32- and 64-bit integers are JSON numbers without a fraction or exponent
 *     ("5", never "5.0" or "5e0"), within the field's range. int64 values beyond
 *     ±2^53 lose precision in JavaScript clients; every int64 of the API (money in
 *     cents, stock units) is bounded far below that.
 *   - Booleans are JSON true/false only; strings are JSON strings only.
 *   - Enums are the value name without the enum's prefix, in lower case:
 *     ORDER_STATUS_PENDING → "pending", ROLE_ADMIN → "admin". The zero value
 *     (*_UNSPECIFIED) is JSON null on output and is not accepted on input.
 *   - Unknown fields, and fields a route does not let the client set, are
 *     rejected: every problem becomes one field violation whose path names the
 *     JSON location ("lines[1].quantity"); the whole body is checked, not only up
 *     to the first problem (at most ERR_FIELDS_MAX are reported).
 *   - Nesting is bounded (JSON_PB_MAX_DEPTH) and so are arrays
 *     (JSON_PB_MAX_ITEMS); the body size is bounded by the HTTP layer.
 *   - bytes fields are not part of any REST message and are rejected.
 * On output every field is present (zero values included), so responses always
 * have the shape the document describes. A string that is not UTF-8 (protobuf-c
 * does not check what a service sends) is rendered with U+FFFD in place of each
 * byte that is not part of a well-formed sequence.
 */
#ifndef COMMON_JSON_PB_H
#define COMMON_JSON_PB_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/arena.h"
#include "common/err.h"

#define JSON_PB_MAX_DEPTH 16
#define JSON_PB_MAX_ITEMS 1000

/* json_pb_parse: body bytes (UTF-8 JSON, one object) into a new message of type
 * `desc` allocated in `a`. `deny` is NULL or a NULL-terminated list of top-level
 * field names the client may not set (they come from the path, the token or a
 * header): they are rejected as unknown. Returns the message, or NULL with err set
 * to ERR_INVALID: msg "malformed JSON: ..." (no fields) when the bytes are not one
 * JSON object, else "invalid request" with one field violation per problem.
 * Thread-safe. */
ProtobufCMessage *json_pb_parse(const char *buf, size_t len, const ProtobufCMessageDescriptor *desc,
                                const char *const *deny, arena_t *a, err_t *err);

/* json_pb_from_json: as json_pb_parse, from a decoded object (borrowed). */
ProtobufCMessage *json_pb_from_json(const json_t *obj, const ProtobufCMessageDescriptor *desc,
                                    const char *const *deny, arena_t *a, err_t *err);

/* json_pb_to_json: the message as a new JSON object (the caller owns the
 * reference). Never NULL: out of memory aborts. Thread-safe. */
json_t *json_pb_to_json(const ProtobufCMessage *msg);

/* json_pb_string: s as a new JSON string, with U+FFFD in place of each byte that is
 * not part of a well-formed UTF-8 sequence. jansson refuses such text (json_string
 * returns NULL), and text that should be UTF-8 is not always: protobuf-c does not
 * check a service's strings (tests/fuzz/regressions/json_pb), a client can send any
 * bytes in a query parameter's name, and a bounded copy may cut a character
 * (tests/fuzz/regressions/http). Never NULL: out of memory aborts. Thread-safe. */
json_t *json_pb_string(const char *s);

/* json_pb_enum_name: the JSON name of an enum value into out ("pending"); false
 * when the value is not in the descriptor or is the zero value. */
bool json_pb_enum_name(const ProtobufCEnumDescriptor *ed, int value, char *out, size_t size);

#endif
