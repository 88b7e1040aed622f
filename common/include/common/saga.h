/*
 * saga: the consuming half of the choreography (docs/architecture.md §4) — one call runs a
 * table of event handlers, each event applied in a PostgreSQL transaction together
 * with its inbox insert and any outbox writes.
 *
 * Per message, in partition order (one slow message holds up its partition; that
 * is what keeps an order's events in order):
 * - CloudEvents headers missing or invalid, or a payload that does not decode as the
 *   routed type: a poison message, dead-lettered at once.
 * - ce_type not in the routes: not this service's business; acknowledged and skipped
 *   (outcome "ignored").
 * - Else, inside a transaction: INSERT INTO processed_events ... ON CONFLICT DO
 *   NOTHING; no row inserted means a duplicate (acknowledged and skipped, outcome
 *   "duplicate"); otherwise the handler runs in the same transaction.
 * - Handler failed with a transient error (err_is_transient: a dependency down, a
 *   timeout, a conflict to retry): retried with exponential backoff for as long as
 *   the consumer runs — a database outage must not dead-letter every event.
 *   ERR_INVALID (the event breaks a rule of its contract: it never will pass):
 *   dead-lettered at once. Any other error: retried up to max_attempts, then
 *   dead-lettered.
 * - Dead-lettering produces the original key, value and headers to `<topic>.dlq` with
 *   dlq_error (the message), dlq_code (err_code_name), dlq_attempts,
 *   dlq_source_topic, dlq_partition, dlq_offset and dlq_group headers added, and
 *   waits for the broker's acknowledgement before moving on. A copy that would not
 *   fit in KFK_MESSAGE_MAX (a record near the broker's limit, plus those headers) is
 *   cut: its value is the longest prefix that fits (maybe none), and headers
 *   dlq_value_truncated=true and dlq_value_bytes=<the whole value's size> say so; if
 *   the original key and headers alone do not fit, the copy is bare: the key and the
 *   dlq_* headers, with dlq_headers_omitted=true too (no value, no original headers;
 *   without the key either, and dlq_key_omitted=true, if the key alone is too large).
 * - A dead-letter produce that fails for a transient reason (broker down, leader
 *   moving, unknown topic) is retried with backoff for as long as the consumer runs,
 *   so nothing is lost to an outage. One refused for good (kfk_err_permanent: too
 *   large for the topic, not authorized, invalid record, policy) is followed at once
 *   by a bare copy (counted as truncated); if that is refused for good too, the
 *   event is skipped: logged at
 *   error level with its coordinates (the source topic still holds it until its
 *   retention), counted in kafka_events_dlq_dropped_total{topic} and outcome
 *   "dropped", and its offset recorded, so no permanent error stops a partition.
 * - The offset is recorded only after the transaction committed or the DLQ copy
 *   was acknowledged (or dropped as above), and committed to the broker
 *   asynchronously after that: at least once, and with the inbox, effectively once.
 *
 * Batches and parallelism: the consumer's poller hands each partition to one of
 * `workers` threads (always the same one for a partition). A worker takes every
 * message queued for it, up to `batch_max`, and applies them in ONE transaction (one
 * inbox row each, one COMMIT); when one event fails, the transaction is rolled back,
 * the events before it commit again without it, the failed one goes on alone under
 * the rules above (retry or DLQ), and the rest continue as a new batch. So a failing
 * or poison event never holds back or undoes the others, each event takes effect
 * once, and per partition — so per key — events are applied in order. Under a light
 * load batches are of one event; under a heavy one, commits and round trips are
 * shared. Partitions are processed in parallel, so a handler's transactions may run
 * concurrently (each connection from the pool), and a batch holds its row locks until
 * its COMMIT: a route that shares rows with other partitions' events names them
 * (saga_locks_fn), and each transaction locks those names in one global order before
 * anything else, so batches never deadlock on them (a deadlock elsewhere is retried by
 * db_txn).
 *
 * While a worker retries one message its partitions wait; past librdkafka's
 * max.poll.interval.ms (5 min) the member leaves the group and its partitions move to
 * another instance, which redelivers (the inbox absorbs it).
 *
 * Handlers run on worker threads with log context request_id = ce_id and trace_id
 * from traceparent. Metrics: kafka_events_consumed_total{topic,type,outcome}
 * (ok | duplicate | ignored | dlq | dropped), kafka_events_failed_total{topic,type}
 * (failed attempts), kafka_events_duplicate_total{topic}, kafka_events_dlq_total{topic}
 * (copies delivered), kafka_events_dlq_truncated_total{topic} (of which without the
 * whole value), kafka_events_dlq_dropped_total{topic}, kafka_event_duration_seconds
 * {topic} (receipt to commit), saga_batch_events (events applied per transaction).
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
 * transient codes are retried without limit, ERR_INVALID (an event that breaks its
 * contract) is dead-lettered at once, others are retried up to max_attempts. It must have
 * no effects outside the transaction (the transaction may be rolled back and run
 * again, also because of another event of its batch). Handlers of one consumer run
 * on several threads at once: ctx must be thread-safe. */
typedef int (*saga_handler_fn)(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                               err_t *err);

/* A route's locks function names the shared things its handler will lock for this
 * event that an event of another partition may lock too — rows that are not the
 * event's own key, such as a product's inventory or a user's wallet, or the key itself
 * when another topic carries events of the same key ("inventory:<id>",
 * "order:<id>"). Before a transaction applies its events, it takes a transaction
 * advisory lock per name, all of them in one global order, so two batches that touch
 * the same things one after the other in different orders wait for each other
 * instead of deadlocking. It returns the number of names and sets *out to an array
 * in `a` (strings in `a` or static). Names are hashed into 32 bits: a collision only
 * makes two unrelated events wait for each other. */
typedef size_t (*saga_locks_fn)(const saga_event_t *ev, arena_t *a, const char ***out);

typedef struct saga_route {
    const ProtobufCMessageDescriptor *type; /* routes events whose ce_type is type->name */
    saga_handler_fn fn;
    saga_locks_fn locks; /* NULL: the handler locks nothing another partition's event does */
} saga_route_t;

/* ---- helpers for handlers and locks functions (saga_step.c) ---- */

/* saga_order_id: the event's order id `raw` in canonical form (uuid_canon) into *out;
 * ERR_INVALID "<ce type>: order_id is not a uuid" otherwise (not transient: the
 * consumer dead-letters the event after its retries). */
int saga_order_id(arena_t *a, const saga_event_t *ev, const char *raw, const char **out,
                  err_t *err);

/* saga_open: the opening of most handlers: saga_order_id, then saga_check(ev->msg)
 * (saga_check.h). 0 or the first error. */
int saga_open(arena_t *a, const saga_event_t *ev, const char *raw, const char **order_id,
              err_t *err);

/* saga_emit: enqueues `msg`, one of the saga events (each has an order_id), on `topic`
 * inside the handler's transaction `tx`, keyed by its order_id so that every event of
 * an order lands on one partition, carrying `traceparent` (the consumed event's
 * ev->ce.traceparent, or the RPC's; NULL for none). outbox_enqueue's contract and
 * return codes; ERR_INVALID if msg has no order_id. Thread-safe (one tx per thread). */
int saga_emit(db_conn_t *tx, arena_t *a, const char *topic, const ProtobufCMessage *msg,
              const char *traceparent, err_t *err);

/* saga_lock_name: "<kind>:<id>" lower-cased in the arena, a name for a saga_locks_fn
 * ("order", the order id). The id need not be checked yet: the locks are taken before
 * the handler checks the event, and a malformed id only locks a name nobody else
 * uses. */
const char *saga_lock_name(arena_t *a, const char *kind, const char *id);

typedef struct saga_consumer saga_consumer_t;

typedef struct saga_consumer_opts {
    const char *brokers;
    const char *group;         /* consumer group (one per service) */
    const char *const *topics; /* copied */
    size_t n_topics;
    const saga_route_t *routes; /* copied */
    size_t n_routes;
    void *ctx;       /* passed to every handler */
    db_pool_t *pool; /* borrowed; must outlive the consumer */
    /* Borrowed, or NULL: the consumer makes its own with kfk_producer_standalone_conf
     * at the first dead letter. A producer with the gap-less guarantee (kfk_producer_new's
     * default) turns a copy the broker refuses for good into a fatal error that stops
     * it for every other use too (the outbox relay's events): services pass NULL. */
    kfk_producer_t *dlq_producer;
    int max_attempts;              /* non-transient failures before the DLQ; 0: 5 */
    int64_t backoff_base_ms;       /* first retry delay, doubling; 0: 100 */
    int64_t backoff_max_ms;        /* cap on the delay; 0: 5000 */
    const char *const *kafka_conf; /* librdkafka overrides for the consumer, or NULL */
    int workers;                   /* threads applying partitions in parallel; 0: 2 */
    int batch_max;                 /* events per transaction at most; 0: 32 */
    int64_t commit_interval_ms;    /* offsets to the broker at most this often; 0: 1000 */
} saga_consumer_opts_t;

/* saga_consumer_start: joins the group and starts the consumer's thread. Owned; stop
 * with saga_consumer_stop. NULL with ERR_INVALID on bad options (no route, a route
 * without type or handler, no pool, bad kafka settings). */
saga_consumer_t *saga_consumer_start(const saga_consumer_opts_t *o, err_t *err);

/* saga_consumer_ping: kfk_consumer_ping of the consumer (readiness). Thread-safe. */
int saga_consumer_ping(saga_consumer_t *c, err_t *err);

/* saga_consumer_stop: finishes the batches in hand (a retry loop or a DLQ delivery
 * that cannot finish is abandoned unacknowledged, to be redelivered, and so is what
 * was queued behind it), commits the processed offsets, leaves the group and frees
 * the consumer. NULL is accepted. */
void saga_consumer_stop(saga_consumer_t *c);

#endif
