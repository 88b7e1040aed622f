/*
 * saga: the consuming half of the choreography (DESIGN.md §4) — one call runs a
 * table of event handlers, each in its own PostgreSQL transaction together with the
 * inbox insert and any outbox writes.
 *
 * Per message, in partition order (one slow message holds up its partition; that
 * is what keeps an order's events in order):
 * - CloudEvents headers missing or invalid, or a payload that does not decode as the
 *   routed type: a poison message, dead-lettered at once.
 * - ce_type not in the routes: not this service's business; acknowledged and skipped
 *   (outcome "ignored").
 * - Else, in one db_txn: INSERT INTO processed_events ... ON CONFLICT DO NOTHING; no
 *   row inserted means a duplicate (acknowledged and skipped, outcome "duplicate");
 *   otherwise the handler runs in the same transaction.
 * - Handler failed with a transient error (err_is_transient: a dependency down, a
 *   timeout, a conflict to retry): retried with exponential backoff for as long as
 *   the consumer runs — a database outage must not dead-letter every event. Any
 *   other error: retried up to max_attempts, then dead-lettered.
 * - Dead-lettering produces the original key, value and headers to `<topic>.dlq` with
 *   dlq_error (the message), dlq_code (err_code_name), dlq_attempts,
 *   dlq_source_topic, dlq_partition, dlq_offset and dlq_group headers added, and
 *   waits for the broker's acknowledgement before moving on.
 * - The offset is committed only after the transaction committed or the DLQ copy
 *   was acknowledged: at least once, and with the inbox, effectively once.
 *
 * While the consumer retries one message it does not poll; past librdkafka's
 * max.poll.interval.ms (5 min) it leaves the group and its partitions move to
 * another instance, which redelivers (the inbox absorbs it).
 *
 * Handlers run on the consumer's thread with log context request_id = ce_id and
 * trace_id from traceparent. Metrics: kafka_events_consumed_total{topic,type,outcome}
 * (ok | duplicate | ignored | dlq), kafka_events_failed_total{topic,type} (failed
 * attempts), kafka_events_duplicate_total{topic}, kafka_events_dlq_total{topic},
 * kafka_event_duration_seconds{topic} (receipt to commit).
 */
#ifndef COMMON_SAGA_H
#define COMMON_SAGA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/err.h"
#include "common/kfk.h"

/* One consumed event, valid for the duration of the handler call (everything lives
 * in the handler's arena or the message). */
typedef struct saga_event {
    kfk_ce_t ce; /* id, type, source, time, traceparent (NULL if none) */
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *key;             /* the message key as a string (the order id); "" if none */
    const ProtobufCMessage *msg; /* unpacked into the arena as the route's type */
} saga_event_t;

/* A handler applies an event inside `tx` (which already holds the inbox row) and may
 * call outbox_enqueue(tx, ...). It returns 0, or a negative err code with err set:
 * transient codes are retried without limit, others up to max_attempts. It must have
 * no effects outside the transaction (db_txn may run it again). */
typedef int (*saga_handler_fn)(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                               err_t *err);

typedef struct saga_route {
    const ProtobufCMessageDescriptor *type; /* routes events whose ce_type is type->name */
    saga_handler_fn fn;
} saga_route_t;

typedef struct saga_consumer saga_consumer_t;

typedef struct saga_consumer_opts {
    const char *brokers;
    const char *group;         /* consumer group (one per service) */
    const char *const *topics; /* copied */
    size_t n_topics;
    const saga_route_t *routes; /* copied */
    size_t n_routes;
    void *ctx;                     /* passed to every handler */
    db_pool_t *pool;               /* borrowed; must outlive the consumer */
    kfk_producer_t *dlq_producer;  /* borrowed (may be the service's producer) */
    int max_attempts;              /* non-transient failures before the DLQ; 0: 5 */
    int64_t backoff_base_ms;       /* first retry delay, doubling; 0: 100 */
    int64_t backoff_max_ms;        /* cap on the delay; 0: 5000 */
    const char *const *kafka_conf; /* librdkafka overrides for the consumer, or NULL */
} saga_consumer_opts_t;

/* saga_consumer_start: joins the group and starts the consumer's thread. Owned; stop
 * with saga_consumer_stop. NULL with ERR_INVALID on bad options (no route, a route
 * without type or handler, no pool or producer, bad kafka settings). */
saga_consumer_t *saga_consumer_start(const saga_consumer_opts_t *o, err_t *err);

/* saga_consumer_stop: finishes the message in hand (a retry loop or a DLQ delivery
 * that cannot finish is abandoned uncommitted, to be redelivered), commits the
 * processed offsets, leaves the group and frees the consumer. NULL is accepted. */
void saga_consumer_stop(saga_consumer_t *c);

#endif
