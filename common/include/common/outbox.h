/*
 * outbox: the transactional outbox (docs/architecture.md §4). A state change and the event that
 * announces it are written in one PostgreSQL transaction (outbox_enqueue); a relay
 * publishes the rows to Kafka in id order and marks them published once the broker
 * has acknowledged them.
 *
 * Guarantees and what they rest on:
 * - At least once: a row is marked published only after its delivery report, so a
 *   relay that dies between produce and mark re-publishes (same ce_id: the consumers'
 *   inbox drops the copy).
 * - Per-key order: one relay at a time (a session advisory lock on the relay's own
 *   connection; when its process dies the connection closes, the lock frees and a
 *   standby relay takes over within a second), rows produced in id order into an
 *   idempotent producer that neither reorders nor leaves gaps (kfk.h), and after a
 *   failed delivery only the rows before the first failure are marked, the rest go
 *   again, in order. Ids are handed out at INSERT and rows become visible at COMMIT,
 *   so two events of one key are in id order only if their transactions serialize:
 *   write the aggregate's row (e.g. UPDATE orders ... WHERE id = $key) before
 *   outbox_enqueue in the same transaction, which every saga step does anyway.
 * - The table does not grow forever: the relay deletes rows published more than
 *   `retention_ms` ago (default 1 h), oldest first, in chunks of 500 rows between
 *   batches (a sweep every 10 s), so a delete never holds up publishing for long.
 *
 * Metrics: outbox_published_total, outbox_lag_seconds (age of the oldest unpublished
 * row at the relay's last scan; 0 when drained), outbox_relay_leader (1 while this
 * process holds the lock).
 */
#ifndef COMMON_OUTBOX_H
#define COMMON_OUTBOX_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/err.h"
#include "common/kfk.h"

/* The advisory lock key relays take by default ("outbox" in ASCII). Each service has
 * its own database, so one key per database is enough. */
#define OUTBOX_LOCK_KEY INT64_C(0x6f7574626f78)

/* outbox_set_source: the CloudEvents source of every event this process enqueues,
 * e.g. "/shop/order-svc" (printable ASCII, no spaces, at most 127 bytes). Call once in
 * main() before any thread enqueues. 0 or ERR_INVALID. */
int outbox_set_source(const char *source);

/* outbox_enqueue: writes `event` as an outbox row inside the caller's transaction
 * `tx`: key (the order id) decides the partition, ce_id is a fresh UUIDv7, ce_type is
 * event->descriptor->name, ce_time is now, traceparent is kept if valid (else
 * dropped). The INSERT's trigger wakes the relay when the transaction commits.
 * Scratch memory comes from `a`. Inside db_txn the insert is sent without waiting for
 * its answer (db_execf_nowait): a failure shows in the transaction's next statement or
 * its COMMIT. 0; ERR_INVALID (empty topic or key); ERR_PRECONDITION
 * (outbox_set_source was not called); or the db error (the caller's transaction should
 * roll back). Thread-safe (one tx per thread). */
int outbox_enqueue(db_conn_t *tx, arena_t *a, const char *topic, const char *key,
                   const ProtobufCMessage *event, const char *traceparent, err_t *err);

typedef struct outbox_relay outbox_relay_t;

typedef struct outbox_relay_opts {
    const char *db_url;       /* the relay opens its own connections (lock, LISTEN) */
    kfk_producer_t *producer; /* borrowed; must outlive the relay */
    int64_t lock_key;         /* 0: OUTBOX_LOCK_KEY */
    int poll_interval_ms;     /* safety-net scan when no NOTIFY came; 0: 500 */
    int batch_size;           /* rows per scan; 0: 256 */
    int64_t retention_ms;     /* keep published rows this long; 0: 1 h; < 0: forever */
} outbox_relay_opts_t;

/* outbox_relay_start: starts the relay thread. It keeps trying, with backoff and
 * rate-limited warnings, while PostgreSQL or Kafka is down, and stands by (trying the
 * lock every second) while another instance relays. Owned; stop with
 * outbox_relay_stop. NULL with ERR_INVALID on bad options. */
outbox_relay_t *outbox_relay_start(const outbox_relay_opts_t *o, err_t *err);

/* outbox_relay_stop: lets the batch in hand finish (waiting up to 5 s for its delivery
 * reports; rows not confirmed by then stay unpublished and go again later), releases
 * the lock, joins the thread and frees the relay. NULL is accepted. */
void outbox_relay_stop(outbox_relay_t *r);

#endif
