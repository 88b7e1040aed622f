/*
 * saga_events: CloudEvents in and out of the saga topics (saga_events.h).
 */
#include "saga_events.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "kafka_auth.h"

void saga_produce(kfk_producer_t *producer, arena_t *a, kfk_batch_t *b, const char *topic,
                  const char *key, const ProtobufCMessage *msg, const char *source,
                  const char *ce_id, char ce_id_out[UUID_STR_LEN])
{
    err_t err = ERR_INIT;
    char id[UUID_STR_LEN], now[CLOCK_RFC3339_LEN];
    if (ce_id)
        snprintf(id, sizeof(id), "%s", ce_id);
    else
        uuid_new(id);
    if (ce_id_out)
        memcpy(ce_id_out, id, UUID_STR_LEN);
    clock_rfc3339(clock_now_us(), now);
    kfk_ce_t ce = {.id = id, .type = msg->descriptor->name, .source = source, .time = now};
    kfk_header_t headers[KFK_CE_HEADERS_MAX];
    int n = kfk_ce_headers(&ce, headers, &err);
    ck_assert_msg(n > 0, "%s", err.msg);
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = arena_alloc(a, len ? len : 1);
    protobuf_c_message_pack(msg, buf);
    kfk_out_msg_t m = {.topic = topic,
                       .key = key,
                       .key_len = strlen(key),
                       .value = buf,
                       .len = len,
                       .headers = headers,
                       .n_headers = (size_t)n};
    ck_assert_msg(kfk_produce(producer, &m, b, &err) == 0, "%s", err.msg);
}

void saga_batch_done(kfk_batch_t *b)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(kfk_batch_wait(b, 30000), 0);
    for (size_t i = 0; i < kfk_batch_len(b); i++)
        ck_assert_msg(kfk_batch_status(b, i, NULL, NULL, &err) == 0, "%s", err.msg);
    kfk_batch_free(b);
}

void saga_send(kfk_producer_t *producer, arena_t *a, const char *topic, const char *key,
               const ProtobufCMessage *msg, const char *source, const char *ce_id,
               char ce_id_out[UUID_STR_LEN])
{
    kfk_batch_t *b = kfk_batch_new(1);
    saga_produce(producer, a, b, topic, key, msg, source, ce_id, ce_id_out);
    saga_batch_done(b);
}

const char *saga_key_in(const char *const *ids, size_t n, const void *key, size_t len)
{
    for (size_t i = 0; key && i < n; i++)
        if (strlen(ids[i]) == len && memcmp(ids[i], key, len) == 0)
            return ids[i];
    return NULL;
}

ProtobufCMessage *saga_decode(const kfk_msg_t *m, const ProtobufCMessageDescriptor *const *types,
                              size_t n, arena_t *a, const char **type)
{
    size_t type_len, len;
    const char *ce_type = kfk_msg_header(m, "ce_type", &type_len);
    for (size_t i = 0; ce_type && i < n; i++) {
        const ProtobufCMessageDescriptor *d = types[i];
        if (strlen(d->name) != type_len || memcmp(d->name, ce_type, type_len) != 0)
            continue;
        const void *value = kfk_msg_value(m, &len);
        ProtobufCMessage *msg =
            protobuf_c_message_unpack(d, arena_protobuf_allocator(a), len, value);
        ck_assert_msg(msg, "%s does not decode", d->name);
        *type = strrchr(d->name, '.') + 1;
        return msg;
    }
    return NULL;
}

size_t saga_dlq_wait(const char *brokers, const char *topic, const char *key, int timeout_ms)
{
    err_t err = ERR_INIT;
    char group[64], id[UUID_STR_LEN];
    uuid_new(id);
    snprintf(group, sizeof(group), "saga-dlq-%s", id);
    ka_admin();
    kfk_consumer_t *c = kfk_consumer_new(brokers, group, (const char *[]){topic}, 1, NULL, &err);
    ck_assert_msg(c, "%s", err.msg);
    size_t n = 0;
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
    while (clock_mono_us() < end) {
        kfk_msg_t *m = kfk_consumer_poll(c, 100);
        if (!m)
            continue;
        size_t len;
        const void *k = kfk_msg_key(m, &len);
        if (saga_key_in(&key, 1, k, len) && n++ == 0) {
            int64_t settle = clock_mono_us() + 2000000;
            end = settle < end ? settle : end;
        }
        kfk_msg_free(m);
    }
    kfk_consumer_close(c);
    return n;
}
