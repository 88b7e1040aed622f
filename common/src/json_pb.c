/*
 * json_pb: one walker over ProtobufCMessageDescriptor for both directions
 * (json_pb.h states the mapping rules).
 *
 * Parsing builds the message directly in the request's arena: members are written
 * at the descriptor's offsets, repeated members get an arena array and their count
 * at quantifier_offset. Problems are collected as field violations and the walk
 * goes on, so a client sees every bad field at once.
 */
#include "common/json_pb.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"

#define JSON_PB_NAME_MAX 96

/* The walk's state: where violations go and the arena the message lives in. */
typedef struct jp_ctx {
    arena_t *a;
    err_t *err;
} jp_ctx_t;

static void jp_violation(jp_ctx_t *c, const char *path, const char *desc)
{
    err_field_add(c->err, path[0] != '\0' ? path : "(body)", "%s", desc);
}

/* ---------------------------------------------------------------- enums ---- */

/* "OrderStatus" → "ORDER_STATUS_": the prefix protoc style puts on every value. */
static void jp_enum_prefix(const ProtobufCEnumDescriptor *ed, char *out, size_t size)
{
    size_t o = 0;
    const char *s = ed->short_name;
    for (size_t i = 0; s[i] != '\0' && o + 3 < size; i++) {
        if (i > 0 && isupper((unsigned char)s[i]) && !isupper((unsigned char)s[i - 1]))
            out[o++] = '_';
        out[o++] = (char)toupper((unsigned char)s[i]);
    }
    out[o++] = '_';
    out[o] = '\0';
}

/* The JSON name of one enum value: prefix stripped, lower case. */
static void jp_enum_value_name(const ProtobufCEnumDescriptor *ed, const ProtobufCEnumValue *v,
                               char *out, size_t size)
{
    char prefix[JSON_PB_NAME_MAX];
    jp_enum_prefix(ed, prefix, sizeof(prefix));
    const char *name = v->name;
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) == 0 && name[plen] != '\0')
        name += plen;
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[i] = '\0';
}

bool json_pb_enum_name(const ProtobufCEnumDescriptor *ed, int value, char *out, size_t size)
{
    if (value == 0)
        return false;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(ed, value);
    if (v == NULL)
        return false;
    jp_enum_value_name(ed, v, out, size);
    return true;
}

/* The value whose JSON name is `name`; false for unknown names and the zero value. */
static bool jp_enum_from_name(const ProtobufCEnumDescriptor *ed, const char *name, int *value)
{
    for (unsigned i = 0; i < ed->n_values; i++) {
        char n[JSON_PB_NAME_MAX];
        jp_enum_value_name(ed, &ed->values[i], n, sizeof(n));
        if (ed->values[i].value != 0 && strcmp(n, name) == 0) {
            *value = ed->values[i].value;
            return true;
        }
    }
    return false;
}

/* --------------------------------------------------------- JSON → proto ---- */

static size_t jp_elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

static ProtobufCMessage *jp_object(jp_ctx_t *c, const json_t *obj,
                                   const ProtobufCMessageDescriptor *desc, const char *const *deny,
                                   const char *path, int depth);

/* An integer field: a JSON integer within [lo, hi]. */
static bool jp_integer(jp_ctx_t *c, const json_t *v, const char *path, long long lo, long long hi,
                       long long *out)
{
    if (!json_is_integer(v)) {
        jp_violation(c, path, "must be an integer");
        return false;
    }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        char d[ERR_DESC_MAX];
        snprintf(d, sizeof(d), "must be between %lld and %lld", lo, hi);
        jp_violation(c, path, d);
        return false;
    }
    *out = x;
    return true;
}

/* One value of field f from v into dst (a member or an array element). */
static void jp_value(jp_ctx_t *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                     const char *path, int depth, void *dst)
{
    long long x;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (jp_integer(c, v, path, INT32_MIN, INT32_MAX, &x))
            *(int32_t *)dst = (int32_t)x;
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (jp_integer(c, v, path, 0, UINT32_MAX, &x))
            *(uint32_t *)dst = (uint32_t)x;
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (jp_integer(c, v, path, INT64_MIN, INT64_MAX, &x))
            *(int64_t *)dst = (int64_t)x;
        return;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (jp_integer(c, v, path, 0, INT64_MAX, &x))
            *(uint64_t *)dst = (uint64_t)x;
        return;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number(v)) {
            jp_violation(c, path, "must be a number");
            return;
        }
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)dst = (float)json_number_value(v);
        else
            *(double *)dst = json_number_value(v);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            jp_violation(c, path, "must be true or false");
        else
            *(protobuf_c_boolean *)dst = json_is_true(v);
        return;
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string(v))
            jp_violation(c, path, "must be a string");
        else
            *(char **)dst = arena_strndup(c->a, json_string_value(v), json_string_length(v));
        return;
    case PROTOBUF_C_TYPE_ENUM: {
        int e;
        if (!json_is_string(v) || !jp_enum_from_name(f->descriptor, json_string_value(v), &e)) {
            char d[ERR_DESC_MAX] = "must be one of:";
            const ProtobufCEnumDescriptor *ed = f->descriptor;
            for (unsigned i = 0; i < ed->n_values; i++) {
                char n[JSON_PB_NAME_MAX];
                if (ed->values[i].value == 0)
                    continue;
                jp_enum_value_name(ed, &ed->values[i], n, sizeof(n));
                size_t l = strlen(d);
                snprintf(d + l, sizeof(d) - l, " %s", n);
            }
            jp_violation(c, path, d);
            return;
        }
        *(int *)dst = e;
        return;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        if (!json_is_object(v)) {
            jp_violation(c, path, "must be an object");
            return;
        }
        *(ProtobufCMessage **)dst = jp_object(c, v, f->descriptor, NULL, path, depth + 1);
        return;
    case PROTOBUF_C_TYPE_BYTES:
        jp_violation(c, path, "binary fields are not supported");
        return;
    }
}

/* A repeated field: a JSON array of at most JSON_PB_MAX_ITEMS values. */
static void jp_repeated(jp_ctx_t *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                        const json_t *v, const char *path, int depth)
{
    if (!json_is_array(v)) {
        jp_violation(c, path, "must be an array");
        return;
    }
    size_t n = json_array_size(v);
    if (n > JSON_PB_MAX_ITEMS) {
        jp_violation(c, path, "too many items (at most 1000)");
        return;
    }
    size_t esz = jp_elem_size(f->type);
    char *arr = n > 0 ? arena_calloc(c->a, n, esz) : NULL;
    for (size_t i = 0; i < n; i++) {
        char p[ERR_FIELD_MAX];
        if (snprintf(p, sizeof(p), "%s[%zu]", path, i) >= (int)sizeof(p))
            p[sizeof(p) - 1] = '\0'; /* a cut path still names the field */
        jp_value(c, f, json_array_get(v, i), p, depth, arr + i * esz);
    }
    *(size_t *)((char *)m + f->quantifier_offset) = n;
    *(void **)((char *)m + f->offset) = arr;
}

static bool jp_denied(const char *const *deny, const char *key)
{
    for (; deny != NULL && *deny != NULL; deny++) {
        if (strcmp(*deny, key) == 0)
            return true;
    }
    return false;
}

/* One member of m from the JSON value v. */
static void jp_field(jp_ctx_t *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                     const json_t *v, const char *path, int depth)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        jp_repeated(c, m, f, v, path, depth);
        return;
    }
    if (json_is_null(v) && f->type == PROTOBUF_C_TYPE_MESSAGE)
        return; /* absent */
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = (uint32_t *)((char *)m + f->quantifier_offset);
        if (*which != 0 && *which != f->id) {
            jp_violation(c, path, "only one field of its group may be set");
            return;
        }
        *which = f->id;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
               f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
        *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    }
    jp_value(c, f, v, path, depth, (char *)m + f->offset);
}

static ProtobufCMessage *jp_object(jp_ctx_t *c, const json_t *obj,
                                   const ProtobufCMessageDescriptor *desc, const char *const *deny,
                                   const char *path, int depth)
{
    if (depth > JSON_PB_MAX_DEPTH) {
        jp_violation(c, path, "nested too deeply");
        return NULL;
    }
    ProtobufCMessage *m = arena_alloc(c->a, desc->sizeof_message);
    protobuf_c_message_init(desc, m);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        char p[ERR_FIELD_MAX];
        snprintf(p, sizeof(p), "%s%s%s", path, path[0] != '\0' ? "." : "", key);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(desc, key);
        if (f == NULL || jp_denied(deny, key))
            jp_violation(c, p, "unknown field");
        else
            jp_field(c, m, f, v, p, depth);
    }
    return m;
}

ProtobufCMessage *json_pb_from_json(const json_t *obj, const ProtobufCMessageDescriptor *desc,
                                    const char *const *deny, arena_t *a, err_t *err)
{
    if (!json_is_object(obj)) {
        err_set(err, ERR_INVALID, "malformed JSON: the body must be a JSON object");
        return NULL;
    }
    err_clear(err);
    jp_ctx_t c = {.a = a, .err = err};
    ProtobufCMessage *m = jp_object(&c, obj, desc, deny, "", 1);
    return err->code == ERR_OK ? m : NULL;
}

ProtobufCMessage *json_pb_parse(const char *buf, size_t len, const ProtobufCMessageDescriptor *desc,
                                const char *const *deny, arena_t *a, err_t *err)
{
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        err_set(err, ERR_INVALID, "malformed JSON at line %d column %d: %s", je.line, je.column,
                je.text);
        return NULL;
    }
    ProtobufCMessage *m = json_pb_from_json(root, desc, deny, a, err);
    json_decref(root);
    return m;
}

/* --------------------------------------------------------- proto → JSON ---- */

json_t *json_pb_string(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    arena_t *a = arena_new(0);
    j = json_string(text_utf8_repair(a, s));
    arena_free(a);
    return j;
}

static json_t *jp_out_value(const ProtobufCFieldDescriptor *f, const void *src)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)src);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)src);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)src);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t u = *(const uint64_t *)src;
        return u <= INT64_MAX ? json_integer((json_int_t)u) : json_real((double)u);
    }
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)src : *(const double *)src;
        return isfinite(d) ? json_real(d) : json_null();
    }
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)src);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)src;
        return json_pb_string(s != NULL ? s : "");
    }
    case PROTOBUF_C_TYPE_ENUM: {
        char n[JSON_PB_NAME_MAX];
        if (!json_pb_enum_name(f->descriptor, *(const int *)src, n, sizeof(n)))
            return json_null();
        return json_string(n);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)src;
        return m != NULL ? json_pb_to_json(m) : json_null();
    }
    case PROTOBUF_C_TYPE_BYTES:
        break;
    }
    return json_null();
}

static void jp_oom(json_t *j)
{
    if (j == NULL) {
        fprintf(stderr, "json_pb: out of memory\n");
        abort();
    }
}

json_t *json_pb_to_json(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    json_t *obj = json_object();
    jp_oom(obj);
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        const char *member = (const char *)msg + f->offset;
        json_t *v;
        if (f->type == PROTOBUF_C_TYPE_BYTES)
            continue;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)((const char *)msg + f->quantifier_offset) != f->id)
                continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)msg + f->quantifier_offset);
            const char *arr = *(char *const *)member;
            size_t esz = jp_elem_size(f->type);
            v = json_array();
            jp_oom(v);
            for (size_t k = 0; k < n; k++)
                json_array_append_new(v, jp_out_value(f, arr + k * esz));
        } else {
            v = jp_out_value(f, member);
        }
        jp_oom(v);
        json_object_set_new(obj, f->name, v);
    }
    return obj;
}
