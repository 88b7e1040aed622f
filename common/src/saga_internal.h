/*
 * saga_internal: what the two halves of the saga consumer share. saga.c owns the
 * threads (one poller, N workers) and hands each worker the messages of its
 * partitions; saga_batch.c applies what a worker took, in as few transactions as
 * failures allow, and records each message's outcome and offset.
 */
#ifndef COMMON_SAGA_INTERNAL_H
#define COMMON_SAGA_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/err.h"
#include "common/saga.h"
#include "common/span.h"

typedef enum {
    SAGA_PENDING, /* decoded, to be applied */
    SAGA_POISON,  /* cannot be decoded: to the DLQ */
    SAGA_OK,
    SAGA_DUPLICATE,
    SAGA_IGNORED,
    SAGA_DLQ,
    SAGA_DROPPED, /* not even a bare dead-letter copy could be produced: skipped */
    SAGA_STOPPED, /* abandoned at shutdown: not acknowledged, redelivered later */
    SAGA_N_OUTCOMES
} saga_outcome_t;

/* The outcome label of each settled outcome (NULL for the unsettled ones). */
extern const char *const saga__outcome_names[SAGA_N_OUTCOMES];

struct saga_consumer {
    saga_consumer_opts_t o; /* routes, group and brokers point at the copies below */
    saga_route_t *routes;
    char *group;
    char *brokers;
    pthread_mutex_t dlq_mu;  /* guards dlq_own */
    kfk_producer_t *dlq_own; /* o.dlq_producer NULL: made at the first dead letter */
    kfk_consumer_t *kc;
    struct saga_metrics *metrics;
    atomic_bool stop;
    pthread_t poller;
    struct saga_worker *workers;
    int n_workers;
};

/* One message in a worker's hands. Everything of it (headers, key, the unpacked
 * event, the handler's allocations and query results) lives in its arena. */
typedef struct saga_item {
    kfk_msg_t *m;
    int64_t received_us; /* when the poller took it (clock_mono_us) */
    arena_t *a;
    saga_event_t ev;
    const saga_route_t *route;
    saga_outcome_t out;
    saga_outcome_t applied; /* inside a batch transaction: what committing it means */
    err_t *why;             /* SAGA_POISON: why, in the arena */
    span_t *span;           /* CONSUMER, from decoding to settling (in the arena); NULL
                               for an event that is not handled here */
} saga_item_t;

/* saga__decode: what the consumer makes of one message, from its parts (headers and
 * value, as kfk_msg_headers and kfk_msg_value give them): the CloudEvents headers
 * parsed (kfk_ce_parse), the route of ce_type looked up in routes[0..n_routes), the
 * value unpacked as the route's type. Sets ev->ce and ev->msg (both in `a`) and
 * *route, nothing else of ev. Returns SAGA_PENDING (to apply), SAGA_IGNORED (no route
 * for ce_type; ev->msg NULL) or SAGA_POISON with err saying why (bad headers: ev->ce
 * zeroed and *route NULL; a value that does not unpack: *route set, ev->msg NULL).
 * No logging and no metrics, so tests/fuzz/fuzz_saga_event.c runs the consumer's very
 * decoding on arbitrary input. Thread-safe. */
saga_outcome_t saga__decode(const saga_route_t *routes, size_t n_routes,
                            const kfk_header_t *headers, size_t n_headers, const void *value,
                            size_t len, arena_t *a, saga_event_t *ev, const saga_route_t **route,
                            err_t *err);

/* saga__replay_log: when `m` was put back by `shopctl dlq replay` (it carries
 * dlq_replayed_by), one info line naming who replayed it, when, why and from which
 * dead-letter entry, with the outcome (saga_replay.c, docs/dlq.md). */
void saga__replay_log(const kfk_msg_t *m, const saga_event_t *ev, const char *outcome, arena_t *a);

/* saga__stopping: stop was requested. */
bool saga__stopping(saga_consumer_t *c);

/* saga__batch: decodes items[0..n) (their m and received_us set), applies them in
 * partition order, and for each one that is not abandoned records its offset, its
 * metrics and its log line. Does not free the items. */
void saga__batch(saga_consumer_t *c, saga_item_t *items, size_t n);

#endif
