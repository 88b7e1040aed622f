/*
 * saga_events: saga events produced to and read from the stack's topics the way the
 * services do it — a protobuf value with CloudEvents headers (ce_id, ce_type, ...),
 * keyed by the order id.
 *
 * Every function fails the test (ck_assert) when the broker or the decoding does
 * not do what it should; call them from inside a test. Not thread-safe.
 */
#ifndef SAGA_EVENTS_H
#define SAGA_EVENTS_H

#include <stddef.h>

#include "common/arena.h"
#include "common/kfk.h"
#include "common/uuid.h"

/* saga_produce: queues `msg` as a CloudEvent from `source` (ce_type = its full
 * message name) to `topic` with key `key` into batch b (saga_batch_done awaits it).
 * ce_id NULL: a fresh one. The id used is copied to ce_id_out when not NULL. The
 * packed value lives in `a`. */
void saga_produce(kfk_producer_t *producer, arena_t *a, kfk_batch_t *b, const char *topic,
                  const char *key, const ProtobufCMessage *msg, const char *source,
                  const char *ce_id, char ce_id_out[UUID_STR_LEN]);

/* saga_batch_done: waits for every ack of batch b (30 s), asserts each succeeded, and
 * frees b. */
void saga_batch_done(kfk_batch_t *b);

/* saga_send: saga_produce of one event, awaited with saga_batch_done. */
void saga_send(kfk_producer_t *producer, arena_t *a, const char *topic, const char *key,
               const ProtobufCMessage *msg, const char *source, const char *ce_id,
               char ce_id_out[UUID_STR_LEN]);

/* saga_key_in: the entry of ids[0..n) equal to the message key (key, len), or NULL
 * (also for a NULL key). */
const char *saga_key_in(const char *const *ids, size_t n, const void *key, size_t len);

/* saga_decode: m's value decoded (in `a`) as the one of types[0..n) its ce_type
 * header names, with *type set to the short name ("StockReserved"). NULL when m has
 * no ce_type or names none of the types; fails the test when the value does not
 * decode. */
ProtobufCMessage *saga_decode(const kfk_msg_t *m, const ProtobufCMessageDescriptor *const *types,
                              size_t n, arena_t *a, const char **type);

/* saga_dlq_wait: reads `topic` (a dead-letter topic) from the beginning in a fresh
 * consumer group until a message keyed `key` arrived (then for 2 s more, so that
 * copies show) or timeout_ms passed; the number of such messages. */
size_t saga_dlq_wait(const char *brokers, const char *topic, const char *key, int timeout_ms);

#endif
