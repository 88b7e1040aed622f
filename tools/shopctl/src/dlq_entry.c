/*
 * dlq_entry: decoding and rendering of one dead-letter record (dlq_entry.h).
 */
#include "dlq_entry.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/json_pb.h"
#include "common/saga_check.h"
#include "common/text.h"

bool dlq_coords_parse(const char *s, arena_t *a, dlq_coords_t *out)
{
    const char *off = strrchr(s, ':');
    if (!off || off == s)
        return false;
    const char *part = off - 1;
    while (part > s && *part != ':')
        part--;
    if (part == s || part + 1 == off)
        return false;
    char *end;
    long p = strtol(part + 1, &end, 10);
    if (end != off || p < 0 || p > INT32_MAX || !isdigit((unsigned char)part[1]))
        return false;
    long long o = strtoll(off + 1, &end, 10);
    if (*end != '\0' || o < 0 || !isdigit((unsigned char)off[1]))
        return false;
    *out = (dlq_coords_t){
        .topic = arena_strndup(a, s, (size_t)(part - s)), .partition = (int32_t)p, .offset = o};
    return true;
}

const char *dlq_coords_string(const dlq_coords_t *c, arena_t *a)
{
    return arena_sprintf(a, "%s:%" PRId32 ":%" PRId64, c->topic, c->partition, c->offset);
}

/* A header's value as a string in `a`; "" when absent. */
static const char *dlq_header(const kfk_msg_t *m, const char *name, arena_t *a)
{
    size_t len;
    const void *v = kfk_msg_header(m, name, &len);
    return v ? arena_strndup(a, v, len) : "";
}

static int64_t dlq_number(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    return *s != '\0' && *end == '\0' && v >= 0 ? v : -1;
}

void dlq_entry_parse(const kfk_msg_t *m, arena_t *a, dlq_entry_t *e)
{
    *e = (dlq_entry_t){
        .m = m,
        .at = {kfk_msg_topic(m), kfk_msg_partition(m), kfk_msg_offset(m)},
        .from = {dlq_header(m, "dlq_source_topic", a),
                 (int32_t)dlq_number(dlq_header(m, "dlq_partition", a)),
                 dlq_number(dlq_header(m, "dlq_offset", a))},
        .ts_ms = kfk_msg_timestamp_ms(m),
        .ce_type = dlq_header(m, "ce_type", a),
        .ce_id = dlq_header(m, "ce_id", a),
        .error = dlq_header(m, "dlq_error", a),
        .code = dlq_header(m, "dlq_code", a),
        .attempts = dlq_header(m, "dlq_attempts", a),
        .group = dlq_header(m, "dlq_group", a),
        .value_truncated = strcmp(dlq_header(m, "dlq_value_truncated", a), "true") == 0,
        .headers_omitted = strcmp(dlq_header(m, "dlq_headers_omitted", a), "true") == 0,
        .key_omitted = strcmp(dlq_header(m, "dlq_key_omitted", a), "true") == 0,
    };
}

const char *dlq_entry_incomplete(const dlq_entry_t *e)
{
    if (e->headers_omitted)
        return "a bare copy: the original value and headers were too large to keep";
    if (e->value_truncated)
        return "the value was truncated to fit the dead-letter topic";
    return NULL;
}

static const char *dlq_time(int64_t ts_ms, arena_t *a)
{
    return ts_ms >= 0 ? clock_rfc3339_in(a, ts_ms * 1000) : "-";
}

/* s on one line: control characters become '?'. */
static void dlq_put_clean(FILE *out, const char *s)
{
    for (; *s; s++)
        fputc(iscntrl((unsigned char)*s) ? '?' : *s, out);
}

void dlq_entry_print_line(FILE *out, const dlq_entry_t *e)
{
    arena_t *a = arena_new(0);
    fprintf(out, "%s %s %s ce_id=%s from=%s:%" PRId32 ":%" PRId64 " code=%s attempts=%s group=%s",
            dlq_coords_string(&e->at, a), dlq_time(e->ts_ms, a), *e->ce_type ? e->ce_type : "-",
            *e->ce_id ? e->ce_id : "-", *e->from.topic ? e->from.topic : "-", e->from.partition,
            e->from.offset, *e->code ? e->code : "-", *e->attempts ? e->attempts : "-",
            *e->group ? e->group : "-");
    if (e->value_truncated)
        fputs(" value_truncated", out);
    if (e->headers_omitted)
        fputs(" headers_omitted", out);
    if (e->key_omitted)
        fputs(" key_omitted", out);
    fputs(" error=\"", out);
    dlq_put_clean(out, e->error);
    fputs("\"\n", out);
    arena_free(a);
}

json_t *dlq_entry_json(const dlq_entry_t *e)
{
    arena_t *a = arena_new(0);
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:I, s:o, s:o, s:i, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:b, s:b}",
        "dlq", dlq_coords_string(&e->at, a), "topic", e->at.topic, "partition",
        (int)e->at.partition, "offset", (json_int_t)e->at.offset, "timestamp",
        e->ts_ms >= 0 ? json_string(dlq_time(e->ts_ms, a)) : json_null(), "source_topic",
        json_pb_string(e->from.topic), "source_partition", (int)e->from.partition, "source_offset",
        (json_int_t)e->from.offset, "ce_type", json_pb_string(e->ce_type), "ce_id",
        json_pb_string(e->ce_id), "dlq_error", json_pb_string(e->error), "dlq_code",
        json_pb_string(e->code), "dlq_attempts", json_integer(dlq_number(e->attempts)), "dlq_group",
        json_pb_string(e->group), "value_truncated", e->value_truncated, "headers_omitted",
        e->headers_omitted, "key_omitted", e->key_omitted);
    arena_free(a);
    return o;
}

/* The payload as JSON by its ce_type, or NULL with *why set. */
static json_t *dlq_payload(const dlq_entry_t *e, const void *value, size_t len, arena_t *a,
                           const char **why)
{
    const char *incomplete = dlq_entry_incomplete(e);
    if (incomplete) {
        *why = incomplete;
        return NULL;
    }
    const ProtobufCMessageDescriptor *type = saga_event_type(e->ce_type);
    if (!type) {
        *why = arena_sprintf(a, "ce_type \"%s\" is not a saga event", e->ce_type);
        return NULL;
    }
    ProtobufCMessage *msg = protobuf_c_message_unpack(type, NULL, len, value);
    if (!msg) {
        *why = arena_sprintf(a, "the value does not decode as %s", type->name);
        return NULL;
    }
    json_t *j = json_pb_to_json(msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    return j;
}

json_t *dlq_entry_show_json(const dlq_entry_t *e, arena_t *a)
{
    json_t *o = dlq_entry_json(e);
    size_t len, key_len;
    const void *key = kfk_msg_key(e->m, &key_len);
    json_object_set_new(o, "key",
                        key ? json_pb_string(arena_strndup(a, key, key_len)) : json_null());
    kfk_header_t *h;
    size_t n = kfk_msg_headers(e->m, a, &h);
    json_t *headers = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            headers, json_pack("{s:o, s:o}", "name", json_pb_string(h[i].name), "value",
                               h[i].value ? json_pb_string(arena_strndup(a, h[i].value, h[i].len))
                                          : json_null()));
    json_object_set_new(o, "headers", headers);
    const void *value = kfk_msg_value(e->m, &len);
    json_object_set_new(o, "value_bytes", json_integer((json_int_t)len));
    const char *why = NULL;
    json_t *payload = dlq_payload(e, value, len, a, &why);
    if (payload) {
        json_object_set_new(o, "payload", payload);
    } else {
        json_object_set_new(o, "payload_error", json_pb_string(why));
        json_object_set_new(o, "payload_base64url",
                            json_string(text_base64url_encode(a, value ? value : "", len)));
    }
    return o;
}
