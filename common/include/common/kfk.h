/*
 * kfk: Kafka for the saga (docs/architecture.md §4) — an idempotent, latency-tuned producer
 * whose delivery reports callers can wait for, a consumer-group member that commits
 * an offset only when told the message was processed, the CloudEvents headers every
 * event carries, and topic administration for tests and tooling.
 *
 * Only kfk_*.c include librdkafka; everything else uses this header. librdkafka's own
 * log lines go through log.h ("kafka" messages with the facility and the client).
 *
 * Error codes: 0 or a negative err_code_t. Broker unreachable or a request timed out:
 * ERR_UNAVAILABLE; local queue full: ERR_EXHAUSTED; unknown topic: ERR_NOT_FOUND; a
 * purged message (shutdown): ERR_CANCELLED; bad input, and a message refused for what
 * it is (too large, an invalid or corrupt record, a policy violation, an invalid topic
 * name): ERR_INVALID; not authorized on the topic or the cluster: ERR_PERMISSION;
 * anything else, including a fatal producer error: ERR_INTERNAL. kfk_err_permanent
 * says which of them sending the same message again cannot cure.
 *
 * Sizes: the whole fleet has one maximum, KFK_BATCH_MAX (1 MiB), the largest record
 * batch a broker takes. The local stack's broker and the compose file's set
 * message.max.bytes to it, the topics max.message.bytes (deploy/local/stack.sh,
 * deploy/docker-compose.yml, kfk_topics_create); the producer refuses locally, before
 * anything is sent, a message that would not fit in a batch of that size, and the
 * consumer fetches up to that much per partition. A producer that sent a batch the
 * broker refuses would, with the gap-less guarantee, fail for good (kfk_producer_new).
 */
#ifndef COMMON_KFK_H
#define COMMON_KFK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/config.h"
#include "common/err.h"

/* ---- CloudEvents Kafka binding (binary mode), pure functions ---- */

#define KFK_CE_SPECVERSION  "1.0"
#define KFK_CE_CONTENT_TYPE "application/protobuf"
#define KFK_CE_HEADERS_MAX                                                                         \
    7                        /* ce_id ce_type ce_source ce_time ce_specversion
                                    content-type [traceparent] */
#define KFK_CE_VALUE_MAX 255 /* longest accepted header value, in bytes */

/* A header as Kafka carries it: a name and a byte string (not NUL-terminated). */
typedef struct kfk_header {
    const char *name;
    const void *value;
    size_t len;
} kfk_header_t;

/* The event attributes. All strings are NUL-terminated; traceparent may be NULL. */
typedef struct kfk_ce {
    const char *id;          /* a UUID: the inbox dedup key */
    const char *type;        /* the protobuf full name, "shop.events.v1.OrderCreated" */
    const char *source;      /* the producer, "/shop/order-svc" */
    const char *time;        /* RFC 3339 */
    const char *traceparent; /* W3C trace context, or NULL */
} kfk_ce_t;

/* kfk_ce_headers: validates `ce` (what kfk_ce_parse would reject is rejected here
 * too, except an invalid traceparent, which is left out as W3C asks) and fills `out`
 * with the binding's headers. The values borrow from `ce` and from static strings.
 * Returns the number of headers written (6 or 7) or ERR_INVALID naming the attribute.
 * Thread-safe. */
int kfk_ce_headers(const kfk_ce_t *ce, kfk_header_t out[KFK_CE_HEADERS_MAX], err_t *err);

/* kfk_ce_parse: reads the attributes from a message's headers (when a name repeats,
 * the last one counts, as in librdkafka). Required: ce_id (a UUID), ce_type,
 * ce_source (printable ASCII), ce_time (RFC 3339), ce_specversion "1.0" and
 * content-type "application/protobuf". traceparent is optional; an invalid one is
 * treated as absent (W3C: restart the trace). The strings are copied into `a`.
 * 0, or ERR_INVALID with a message naming the header ("missing header ce_id",
 * "invalid header ce_time: ..."). Thread-safe. */
int kfk_ce_parse(const kfk_header_t *headers, size_t n, arena_t *a, kfk_ce_t *out, err_t *err);

/* ---- sizes and errors ---- */

/* The largest record batch the brokers and topics accept, in bytes: broker
 * message.max.bytes and topic max.message.bytes. The deployment files repeat the
 * number (tests/deploy/test_compose.py checks that they agree). */
#define KFK_BATCH_MAX 1048576
/* A record batch's header (base offset, length, epoch, magic, CRC, attributes, ...),
 * which the broker counts and librdkafka's size check does not. */
#define KFK_BATCH_OVERHEAD 61
/* The largest message kfk_produce takes, as kfk_out_msg_size measures it (the
 * producer's message.max.bytes): one such message alone in a batch fills at most
 * KFK_BATCH_MAX, so what the producer accepts the broker accepts too. */
#define KFK_MESSAGE_MAX (KFK_BATCH_MAX - KFK_BATCH_OVERHEAD)

/* kfk_err_permanent: true for the produce errors that sending the same message to the
 * same topic again cannot cure: ERR_INVALID (too large for KFK_MESSAGE_MAX or the
 * topic, invalid or corrupt record, policy violation, invalid topic) and
 * ERR_PERMISSION (topic or cluster authorization). Everything else is worth retrying:
 * the broker down or slow, leaders moving, an unknown topic or partition (Kafka counts
 * it retriable: metadata lags behind a topic's creation), the local queue full, and
 * errors nobody classified (an unknown broker error more likely means a broker in
 * trouble than a verdict on the message). */
bool kfk_err_permanent(int code);

/* ---- authentication (docs/trust.md, "Kafka") ---- */

/* Who this process is to the brokers. With a username, every client speaks SASL_SSL:
 * TLS verified against ca_file (NULL or "": the system's CAs), then SASL PLAIN with
 * the username and password (inside TLS; PLAIN and not SCRAM because librdkafka before
 * 2.6.1 cannot log in with SCRAM to a Kafka 4 broker, docs/decisions.md). Without one,
 * plaintext and no authentication (a broker of the fleet refuses it). */
typedef struct kfk_auth {
    const char *username;
    const char *password;
    const char *ca_file;
} kfk_auth_t;

/* The settings of a process's Kafka login, for cfg_load / cfg_usage_print into a
 * kfk_auth_t (each program loads and prints them with its own table, then calls
 * kfk_auth_set): KAFKA_USERNAME, KAFKA_PASSWORD (secret, or KAFKA_PASSWORD_FILE),
 * TLS_CA_FILE, all empty by default. TLS_CA_FILE stays the last entry: the services
 * read it with gRPC's table too and list only the first kfk_auth_cfg_n - 1 here. */
extern const cfg_entry_t kfk_auth_cfg_table[];
extern const size_t kfk_auth_cfg_n;

/* The SASL mechanism kfk_auth_set configures ("PLAIN"), for tools that configure
 * other Kafka clients the same way. */
extern const char kfk_sasl_mechanism[];

/* kfk_auth_set: the credentials of every Kafka client this process creates from now
 * on: producers, consumers, readers, the topic administration (copied; a NULL `a` or
 * an empty username clears them). Per client, `conf` overrides can still set other
 * sasl.* / security.protocol properties (tests acting as another principal). A
 * failed login is logged once per process at error level, naming the user, and makes
 * kfk_producer_ping say so (readiness). ERR_INVALID when a username comes without a
 * password, or a field is longer than 1 KiB. Call it before creating clients. */
int kfk_auth_set(const kfk_auth_t *a, err_t *err);

/* ---- producer ---- */

typedef struct kfk_producer kfk_producer_t;

/* What to produce. The key decides the partition (murmur2, as the Java client does);
 * every buffer is copied by kfk_produce. */
typedef struct kfk_out_msg {
    const char *topic;
    const void *key;
    size_t key_len;
    const void *value;
    size_t len;
    const kfk_header_t *headers;
    size_t n_headers;
} kfk_out_msg_t;

/* kfk_out_msg_size: the size of `m` as the producer counts it against
 * KFK_MESSAGE_MAX (librdkafka's measure: key, value, each header's name and value
 * with their lengths, and 36 bytes of record framing at its largest). Pure. */
size_t kfk_out_msg_size(const kfk_out_msg_t *m);

/* kfk_producer_new: an idempotent producer (enable.idempotence, so acks=all and at
 * most 5 requests in flight, which keeps per-partition order), tuned for latency
 * (linger.ms=0, socket.nagle.disable), with the gap-less guarantee on and no local
 * message timeout: a message is retried until the broker takes it or the producer is
 * freed, so an outage delays events but never reorders them. The price of the
 * guarantee: a batch the broker refuses for good (too large, not authorized, ...)
 * makes the producer fail for good (ERR_INTERNAL from then on, kfk_producer_ping
 * says so), since going on would leave a gap. Messages larger than KFK_MESSAGE_MAX
 * (message.max.bytes) are refused locally instead, at kfk_produce. `conf` (NULL or
 * alternating librdkafka property names and values ending with NULL) overrides any
 * of these. A thread of its own serves delivery reports as they arrive.
 * Owned; NULL with ERR_INVALID on a bad property. Thread-safe. */
kfk_producer_t *kfk_producer_new(const char *brokers, const char *client_id,
                                 const char *const *conf, err_t *err);

/* kfk_brokers_check: ERR_INVALID unless `brokers` is a comma-separated list of
 * [scheme://]host:port with a non-empty host ("[v6]" allowed) and a port 1..65535,
 * the bootstrap list every client of the fleet is given. */
int kfk_brokers_check(const char *brokers, err_t *err);

/* kfk_instance_id_check: ERR_INVALID unless `id` is empty or a legal consumer-group
 * instance id for static membership (1..249 of [A-Za-z0-9._-], as Kafka's own names). */
int kfk_instance_id_check(const char *id, err_t *err);

/* kfk_producer_standalone_conf: overrides for kfk_producer_new's `conf` that make a
 * producer of messages that stand alone, each produced after the previous one was
 * acknowledged (dead-letter copies): no idempotence, so no gap-less guarantee to
 * keep, and a message the broker refuses for good fails alone, in its delivery
 * report, while the producer goes on. Retries stay unlimited (acks=all, no local
 * timeout); a retry after a lost acknowledgement may write a message twice. */
extern const char *const kfk_producer_standalone_conf[];

/* kfk_producer_free: waits up to 5 s for queued messages to be delivered, purges what
 * is left (their delivery reports say ERR_CANCELLED), then destroys the producer.
 * Every batch a message was produced with must outlive this call or be freed by
 * kfk_batch_free (which is safe with reports still pending). NULL is accepted. */
void kfk_producer_free(kfk_producer_t *p);

/* kfk_producer_flush: waits up to timeout_ms for every queued message's delivery
 * report; 0, or ERR_TIMEOUT with the number still queued. Thread-safe. */
int kfk_producer_flush(kfk_producer_t *p, int timeout_ms, err_t *err);

/* kfk_producer_ping: 0 if the producer is usable and a broker answered a metadata
 * request within timeout_ms (readiness); ERR_UNAVAILABLE or, after a fatal producer
 * error (it must then be recreated: restart the process), ERR_INTERNAL. */
int kfk_producer_ping(kfk_producer_t *p, int timeout_ms, err_t *err);

/* A batch collects the delivery reports of the messages produced with it, in
 * produce order, so a caller can wait for all of them (the outbox relay, a DLQ
 * copy). Reports arrive on the producer's thread; the batch is shared with it under
 * a mutex, and kfk_batch_free may be called before every report arrived (the last
 * report then frees it). One thread produces into and waits on a batch. */
typedef struct kfk_batch kfk_batch_t;

/* kfk_batch_new: an empty batch for up to `capacity` messages. Owned. */
kfk_batch_t *kfk_batch_new(size_t capacity);

/* kfk_batch_free: gives the batch up; reports still to come are discarded. NULL is
 * accepted. */
void kfk_batch_free(kfk_batch_t *b);

/* kfk_batch_len: messages produced into the batch so far. */
size_t kfk_batch_len(const kfk_batch_t *b);

/* kfk_batch_wait: waits up to timeout_ms (0: just look) until every message produced
 * into the batch has its report. 0 when all have, else ERR_TIMEOUT. */
int kfk_batch_wait(kfk_batch_t *b, int timeout_ms);

/* kfk_batch_status: the outcome of the i-th message: 0 delivered (then *partition and
 * *offset, either may be NULL), ERR_TIMEOUT while its report is still to come, or the
 * delivery error with its message in err. */
int kfk_batch_status(kfk_batch_t *b, size_t i, int32_t *partition, int64_t *offset, err_t *err);

/* kfk_produce: queues one message. With a batch, its report is recorded there as the
 * next slot (a full batch is ERR_EXHAUSTED); without, a failed delivery is only
 * logged and counted. Counts kafka_events_produced_total{topic} when the broker
 * acknowledges and kafka_produce_errors_total{topic} on failure. 0, or
 * ERR_EXHAUSTED (local queue full: wait for reports and retry), ERR_INVALID (among
 * others, kfk_out_msg_size over KFK_MESSAGE_MAX: nothing was sent), ERR_NOT_FOUND
 * (a topic known not to exist), ERR_INTERNAL (fatal producer error). Never blocks.
 * Thread-safe. */
int kfk_produce(kfk_producer_t *p, const kfk_out_msg_t *m, kfk_batch_t *b, err_t *err);

/* ---- consumer ---- */

typedef struct kfk_consumer kfk_consumer_t;
typedef struct kfk_msg kfk_msg_t;

/* kfk_consumer_new: joins consumer group `group` and subscribes to `topics`
 * (partition.assignment.strategy=cooperative-sticky, auto.offset.reset=earliest,
 * fetch.wait.max.ms=500, max.partition.fetch.bytes=KFK_BATCH_MAX, no automatic offset
 * store or commit, topics that appear later noticed within 10 s). `conf` overrides as
 * for the producer. Owned; close with kfk_consumer_close. One thread uses a
 * consumer. NULL with ERR_INVALID on bad settings. */
kfk_consumer_t *kfk_consumer_new(const char *brokers, const char *group, const char *const *topics,
                                 size_t n_topics, const char *const *conf, err_t *err);

/* A partition of a topic, as a rebalance names it (topic borrowed for the call). */
typedef struct kfk_partition {
    const char *topic;
    int32_t partition;
} kfk_partition_t;

/* kfk_revoke_fn: called on the polling thread when partitions are taken away from
 * this member (a rebalance, a lost session, kfk_consumer_close), before the offsets
 * recorded for them are committed. It returns once no message of those partitions is
 * being processed any more; messages not yet started may simply be dropped (the next
 * owner gets them again). */
typedef void (*kfk_revoke_fn)(const kfk_partition_t *parts, size_t n, void *ud);

/* kfk_consumer_on_revoke: installs the hook (before the first poll). */
void kfk_consumer_on_revoke(kfk_consumer_t *c, kfk_revoke_fn fn, void *ud);

/* kfk_consumer_poll: the next message, waiting up to timeout_ms; NULL on timeout or
 * after a consumer error (logged). Serves rebalances and offset commits. Owned: free
 * with kfk_msg_free (from any thread). */
kfk_msg_t *kfk_consumer_poll(kfk_consumer_t *c, int timeout_ms);

/* kfk_consumer_set_commit_interval: how often recorded offsets go to the broker
 * (ms; <= 0: the default, 1000). Before the first poll. */
void kfk_consumer_set_commit_interval(kfk_consumer_t *c, int64_t ms);

/* kfk_consumer_commit: records that `m` was processed, so its partition's committed
 * offset may move past it (offset + 1). Commits go to the broker asynchronously and
 * coalesced (at most once per commit interval, checked at each poll; before
 * partitions are revoked; at close); a commit that is lost only means redelivery,
 * which the inbox absorbs.
 * 0, or ERR_PRECONDITION if the partition is no longer assigned (the message will be
 * redelivered to its new owner). Thread-safe: worker threads may record what they
 * processed while one thread polls; per partition, record in offset order. */
int kfk_consumer_commit(kfk_consumer_t *c, const kfk_msg_t *m, err_t *err);

/* kfk_consumer_ping: 0 while the consumer can work; ERR_INTERNAL after a fatal
 * error, which no retry heals (another process joined with this member's
 * group.instance.id and fenced it: restart it with an id of its own). Readiness. */
int kfk_consumer_ping(kfk_consumer_t *c, err_t *err);

/* kfk_consumer_close: commits what was recorded, leaves the group cleanly (so its
 * partitions move at once; a static member, with a group.instance.id, stays until its
 * session runs out, for its restart to take them back) and frees the consumer. A
 * member whose group is between its join and its sync first waits for the sync (at
 * most 5 s; past that the handle is left to the process's exit): librdkafka 2.0.2
 * aborts if destroyed there (kfk_consumer.c). NULL is accepted. */
void kfk_consumer_close(kfk_consumer_t *c);

/* Message accessors: borrowed, valid until kfk_msg_free. key and value may be NULL
 * (then *len is 0). */
const char *kfk_msg_topic(const kfk_msg_t *m);
int32_t kfk_msg_partition(const kfk_msg_t *m);
int64_t kfk_msg_offset(const kfk_msg_t *m);
const void *kfk_msg_key(const kfk_msg_t *m, size_t *len);
const void *kfk_msg_value(const kfk_msg_t *m, size_t *len);

/* kfk_msg_header: the last value of header `name`, or NULL if absent. */
const void *kfk_msg_header(const kfk_msg_t *m, const char *name, size_t *len);

/* kfk_msg_headers: every header in order, as an array allocated in `a` whose names
 * and values borrow from the message. Returns the count (*out is NULL for 0). */
size_t kfk_msg_headers(const kfk_msg_t *m, arena_t *a, kfk_header_t **out);

/* kfk_msg_ce: kfk_ce_parse over the message's headers. */
int kfk_msg_ce(const kfk_msg_t *m, arena_t *a, kfk_ce_t *out, err_t *err);

/* kfk_msg_timestamp_ms: the record's timestamp (ms since the epoch, as the producer
 * or the broker set it), or -1 when it has none. */
int64_t kfk_msg_timestamp_ms(const kfk_msg_t *m);

/* kfk_msg_free: NULL is accepted. */
void kfk_msg_free(kfk_msg_t *m);

/* ---- reader (operator tools) ---- */

/* A reader reads chosen partitions from chosen offsets without a consumer group and
 * without committing anything: what it reads changes nothing for the consumers of
 * the topics (shopctl dlq). One thread uses a reader. */
typedef struct kfk_reader kfk_reader_t;

/* kfk_reader_new: a reader (assign() only: the client id doubles as the group.id
 * librdkafka wants, but no group is joined and nothing is committed; partition EOF
 * reported). Owned; NULL with ERR_INVALID on bad settings. */
kfk_reader_t *kfk_reader_new(const char *brokers, const char *client_id, err_t *err);

/* kfk_reader_free: NULL is accepted. */
void kfk_reader_free(kfk_reader_t *r);

/* kfk_reader_partition_count: the number of partitions of `topic` (broker metadata),
 * or ERR_NOT_FOUND ("no topic ...") for a topic the cluster does not have, or another
 * negative code (ERR_UNAVAILABLE: no broker answered). */
int kfk_reader_partition_count(kfk_reader_t *r, const char *topic, err_t *err);

/* kfk_reader_add: before the first kfk_reader_next, schedules `topic`:`partition`
 * from offset `from` (< 0: the oldest offset still held) for up to `count` messages
 * (<= 0: all), never past the high watermark as it is now. ERR_NOT_FOUND when `from`
 * is outside the offsets the partition holds (deleted by retention, or not written
 * yet); an empty range is 0 and adds nothing. */
int kfk_reader_add(kfk_reader_t *r, const char *topic, int32_t partition, int64_t from,
                   int64_t count, err_t *err);

/* kfk_reader_next: the next message of the scheduled ranges (per partition in offset
 * order, partitions interleaved), waiting up to timeout_ms in total. NULL with
 * err->code 0 once every range was read; NULL with ERR_TIMEOUT or the read error
 * otherwise. The message is owned: kfk_msg_free; the kfk_msg_* accessors apply. */
kfk_msg_t *kfk_reader_next(kfk_reader_t *r, int timeout_ms, err_t *err);

/* ---- administration (tests and tooling) ---- */

/* kfk_topics_create: creates each topic with `partitions` partitions, replication
 * factor 1 and max.message.bytes=KFK_BATCH_MAX (one that exists already is fine, as
 * it is), then waits until the cluster's metadata shows them all, within timeout_ms.
 * 0 or an error naming the topic. */
int kfk_topics_create(const char *brokers, const char *const *topics, size_t n, int partitions,
                      int timeout_ms, err_t *err);

/* kfk_topics_create_with: kfk_topics_create with topic settings `conf` (NULL or
 * alternating names and values ending with NULL) applied to each new topic after
 * max.message.bytes, which they may override. */
int kfk_topics_create_with(const char *brokers, const char *const *topics, size_t n, int partitions,
                           const char *const *conf, int timeout_ms, err_t *err);

/* kfk_topics_delete: deletes each topic (one that does not exist is fine). */
int kfk_topics_delete(const char *brokers, const char *const *topics, size_t n, int timeout_ms,
                      err_t *err);

#endif
