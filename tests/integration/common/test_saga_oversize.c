/*
 * Records at the size limits, against the stack's PostgreSQL and Kafka: the fleet's
 * producer and its topics agree on one maximum (what the producer accepts, a topic
 * takes; a batch one byte over it, the broker refuses), a poison record of about
 * 1 MB, one exactly at the broker's limit, one whose headers fill it and one whose
 * key does all reach the dead-letter topic (whole, with a truncated value, bare,
 * keyless) with their coordinates,
 * while the events after them on the same partition and on the others are applied;
 * and a dead-letter copy refused for good is followed by a bare copy, and when that
 * is refused too the event is skipped and its offset committed, so neither the
 * partition nor the next member of the group stops on it.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "saga_test_support.h"
#include "shop/events/v1/events.pb-c.h"

#define WAIT_MS 30000

static const char *const ORDER_CREATED = "shop.events.v1.OrderCreated";

/* Where a produced message landed. */
typedef struct landed {
    int32_t partition;
    int64_t offset;
} landed_t;

/* A producer like a foreign one that takes larger messages than ours: no local size
 * check short of 2 MiB, and (standalone) a refused message does not stop it. */
static kfk_producer_t *new_big_producer(st_env_t *e)
{
    static const char *const conf[] = {"enable.idempotence",
                                       "false",
                                       "enable.gapless.guarantee",
                                       "false",
                                       "message.max.bytes",
                                       "2097152",
                                       NULL};
    err_t err = ERR_INIT;
    kfk_producer_t *p = kfk_producer_new(e->brokers, "test-saga-big", conf, &err);
    ck_assert_msg(p, "%s", err.msg);
    return p;
}

/* The fleet's producer as the services make it. */
static kfk_producer_t *new_producer(st_env_t *e)
{
    err_t err = ERR_INIT;
    kfk_producer_t *p = kfk_producer_new(e->brokers, "test-saga-oversize", NULL, &err);
    ck_assert_msg(p, "%s", err.msg);
    return p;
}

/* Produces m and waits for its report: 0 (then *at is set, if not NULL) or the error,
 * whether kfk_produce refused it or the broker did. */
static int produce_try(kfk_producer_t *p, const kfk_out_msg_t *m, landed_t *at, err_t *err)
{
    kfk_batch_t *b = kfk_batch_new(1);
    int rc = kfk_produce(p, m, b, err);
    if (rc == 0) {
        ck_assert_int_eq(kfk_batch_wait(b, WAIT_MS), 0);
        landed_t l;
        rc = kfk_batch_status(b, 0, &l.partition, &l.offset, err);
        if (rc == 0 && at)
            *at = l;
    }
    kfk_batch_free(b);
    return rc;
}

static landed_t produce(kfk_producer_t *p, const kfk_out_msg_t *m)
{
    err_t err = ERR_INIT;
    landed_t at;
    ck_assert_msg(produce_try(p, m, &at, &err) == 0, "%s", err.msg);
    return at;
}

/* Bytes of a zigzag varint, as the record format writes lengths. */
static size_t varint_size(int64_t n)
{
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    size_t k = 1;
    for (; z >= 0x80; z >>= 7)
        k++;
    return k;
}

/* The size the broker checks against max.message.bytes for a batch holding m alone:
 * the batch header and one record with its real varints (attributes, then timestamp
 * and offset deltas, both 0 for a batch's first record). Kafka's record format,
 * written out independently of kfk_out_msg_size. */
static size_t batch_size(const kfk_out_msg_t *m)
{
    size_t body = 1 + 1 + 1 + varint_size((int64_t)m->key_len) + m->key_len +
                  varint_size((int64_t)m->len) + m->len + varint_size((int64_t)m->n_headers);
    for (size_t i = 0; i < m->n_headers; i++) {
        size_t name = strlen(m->headers[i].name);
        body += varint_size((int64_t)name) + name + varint_size((int64_t)m->headers[i].len) +
                m->headers[i].len;
    }
    return KFK_BATCH_OVERHEAD + varint_size((int64_t)body) + body;
}

/* A value of `len` bytes that decodes as no protobuf message (0xff: field 31, wire
 * type 7, which does not exist), in the env's arena. */
static uint8_t *garbage(st_env_t *e, size_t len)
{
    uint8_t *v = arena_alloc(e->a, len ? len : 1);
    memset(v, 0xff, len);
    return v;
}

/* A message to the test's topic with valid CloudEvents headers (a fresh id, written
 * into id) and, if blob is not NULL, a header "x-blob" after them, set to *blob; its
 * value (and the blob's) set by the caller. */
static kfk_out_msg_t ce_message(st_env_t *e, const char *key, char id[UUID_STR_LEN],
                                kfk_header_t **blob)
{
    err_t err = ERR_INIT;
    kfk_ce_t ce = st_ce(e, ORDER_CREATED, id);
    kfk_header_t *h = arena_calloc(e->a, KFK_CE_HEADERS_MAX + 1, sizeof(*h));
    int n = kfk_ce_headers(&ce, h, &err);
    ck_assert_msg(n > 0, "%s", err.msg);
    if (blob) {
        h[n] = (kfk_header_t){.name = "x-blob", .value = "", .len = 0};
        *blob = &h[n++];
    }
    return (kfk_out_msg_t){.topic = e->topic,
                           .key = key,
                           .key_len = strlen(key),
                           .headers = h,
                           .n_headers = (size_t)n};
}

/* Sets *len (m's value length, or one of its headers') to what makes m's batch
 * exactly `target` bytes, and returns garbage of that length for the caller to put
 * in place. */
static uint8_t *fill_to(st_env_t *e, const kfk_out_msg_t *m, size_t *len, size_t target)
{
    *len = 0;
    size_t base = batch_size(m);
    ck_assert_uint_lt(base, target);
    *len = target - base;
    while (batch_size(m) > target)
        (*len)--;
    ck_assert_uint_eq(batch_size(m), target);
    return garbage(e, *len);
}

static void produce_order(st_env_t *e, kfk_producer_t *p, const char *key, int64_t seq)
{
    char id[UUID_STR_LEN];
    size_t len;
    const uint8_t *v = st_pack_order(e, key, seq, &len);
    kfk_ce_t ce = st_ce(e, ORDER_CREATED, id);
    st_produce(e, p, key, v, len, &ce, NULL);
}

static saga_consumer_t *start_consumer(st_env_t *e, const char *group)
{
    static const saga_route_t routes[] = {
        {&shop__events__v1__order_created__descriptor, st_effect_handler, NULL}};
    const char *topics[] = {e->topic};
    saga_consumer_opts_t o = {.brokers = e->brokers,
                              .group = group,
                              .topics = topics,
                              .n_topics = 1,
                              .routes = routes,
                              .n_routes = 1,
                              .pool = e->pool,
                              .dlq_producer = NULL, /* its own, as in the services */
                              .max_attempts = 2,
                              .backoff_base_ms = 10,
                              .backoff_max_ms = 100,
                              .workers = 2};
    err_t err = ERR_INIT;
    saga_consumer_t *c = saga_consumer_start(&o, &err);
    ck_assert_msg(c, "%s", err.msg);
    return c;
}

static double topic_metric(st_env_t *e, const char *name, const char *extra)
{
    char topic[ST_NAME_MAX + 16];
    snprintf(topic, sizeof(topic), "topic=\"%s\"", e->topic);
    return st_metric(name, (const char *[]){topic, extra, NULL});
}

/* The effects of `key`, in the order they were written, as their sequence numbers
 * joined with commas ("0,1,2"). */
static const char *effects_of(st_env_t *e, const char *key)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(e->pool, 2000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, e->a, &err,
                           "SELECT coalesce(string_agg(seq::text, ',' ORDER BY id), '')"
                           " FROM effects WHERE key = $1",
                           1, key);
    ck_assert_msg(r, "%s", err.msg);
    const char *seqs = db_res_str(r, 0, 0);
    db_pool_release(e->pool, c);
    return seqs;
}

/* The dead letter of the record that landed at `at`, found by its coordinates. */
static const st_record_t *dead_letter_of(st_env_t *e, const st_record_t *dlq, size_t n, landed_t at)
{
    char partition[16], offset[24];
    snprintf(partition, sizeof(partition), "%" PRId32, at.partition);
    snprintf(offset, sizeof(offset), "%" PRId64, at.offset);
    const st_record_t *found = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *t = st_header(&dlq[i], "dlq_source_topic"),
                   *p = st_header(&dlq[i], "dlq_partition"), *o = st_header(&dlq[i], "dlq_offset");
        ck_assert_msg(t && p && o, "dead letter %zu without its coordinates", i);
        if (strcmp(t, e->topic) == 0 && strcmp(p, partition) == 0 && strcmp(o, offset) == 0) {
            ck_assert_msg(!found, "two dead letters of %s[%s]@%s", t, p, o);
            found = &dlq[i];
        }
    }
    ck_assert_msg(found, "no dead letter of [%s]@%s", partition, offset);
    return found;
}

START_TEST(test_producer_and_topics_agree_on_the_maximum_size)
{
    st_env_t e;
    st_setup(&e, "olimits");
    kfk_producer_t *p = new_producer(&e), *big = new_big_producer(&e);
    err_t err = ERR_INIT;
    char id[UUID_STR_LEN];

    /* The fleet's producer: a message of exactly KFK_MESSAGE_MAX is taken, by it and
     * by the broker (a batch the broker refused would make it fail for good); one
     * byte more is refused before anything is sent. */
    kfk_out_msg_t m = ce_message(&e, "order-l-00", id, NULL);
    m.len = KFK_MESSAGE_MAX - kfk_out_msg_size(&m);
    m.value = garbage(&e, m.len);
    ck_assert_uint_eq(kfk_out_msg_size(&m), KFK_MESSAGE_MAX);
    produce(p, &m);
    m.len++;
    m.value = garbage(&e, m.len);
    int rc = kfk_produce(p, &m, NULL, &err);
    ck_assert_msg(rc == ERR_INVALID, "a message over KFK_MESSAGE_MAX: %d %s", rc, err.msg);
    ck_assert(kfk_err_permanent(rc));
    ck_assert_int_eq(kfk_producer_ping(p, 5000, &err), 0);

    /* The topic: a batch of exactly KFK_BATCH_MAX is taken, one byte more refused for
     * good (MSG_SIZE_TOO_LARGE from the broker), and a standalone producer goes on. */
    kfk_out_msg_t at = ce_message(&e, "order-l-01", id, NULL);
    at.value = fill_to(&e, &at, &at.len, KFK_BATCH_MAX);
    produce(big, &at);
    at.value = fill_to(&e, &at, &at.len, KFK_BATCH_MAX + 1);
    err = (err_t)ERR_INIT;
    rc = produce_try(big, &at, NULL, &err);
    ck_assert_msg(rc == ERR_INVALID, "a batch over KFK_BATCH_MAX: %d %s", rc, err.msg);
    ck_assert(kfk_err_permanent(rc));
    produce_order(&e, big, "order-l-02", 1);

    kfk_producer_free(big);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

#define OTHER_KEYS 11
#define BLOB_SPARE 50 /* a header filling the record but for that much */

START_TEST(test_poison_records_at_the_size_limits_are_dead_lettered_and_partitions_move_on)
{
    st_env_t e;
    st_setup(&e, "oversize");
    kfk_producer_t *p = new_producer(&e), *big = new_big_producer(&e);
    char group[ST_NAME_MAX], key[64], id1[UUID_STR_LEN], id2[UUID_STR_LEN], id3[UUID_STR_LEN];
    st_name("test-saga-oversize", '-', group, sizeof(group));
    const char *k = "order-o-00";

    /* On one key, so one partition: events 0..3 with three poison records between
     * them, the first about 1 MB (its copy did not fit the producer's old default of
     * 1000000 bytes), the second exactly at the broker's limit (its copy cannot fit
     * whole), the third with a header filling almost all of it (only a bare copy
     * fits). Eleven other keys, spread over the other partitions, before and after. */
    for (int i = 1; i <= OTHER_KEYS; i++) {
        st_key("order-o", i, key, sizeof(key));
        produce_order(&e, p, key, 0);
    }
    produce_order(&e, p, k, 0);
    kfk_out_msg_t m1 = ce_message(&e, k, id1, NULL);
    m1.len = 1000000;
    m1.value = garbage(&e, m1.len);
    landed_t at1 = produce(big, &m1);
    produce_order(&e, p, k, 1);
    kfk_out_msg_t m2 = ce_message(&e, k, id2, NULL);
    m2.value = fill_to(&e, &m2, &m2.len, KFK_BATCH_MAX);
    landed_t at2 = produce(big, &m2);
    produce_order(&e, p, k, 2);
    kfk_header_t *blob;
    kfk_out_msg_t m3 = ce_message(&e, k, id3, &blob);
    m3.len = 100;
    m3.value = garbage(&e, m3.len);
    blob->value = fill_to(&e, &m3, &blob->len, KFK_BATCH_MAX - BLOB_SPARE);
    landed_t at3 = produce(big, &m3);
    produce_order(&e, p, k, 3);
    /* And on a key of its own, since no event can follow on it: a key filling the
     * record (only the dlq_* headers fit). */
    char id4[UUID_STR_LEN];
    kfk_out_msg_t m4 = ce_message(&e, "", id4, NULL);
    m4.len = 10;
    m4.value = garbage(&e, m4.len);
    m4.key = fill_to(&e, &m4, &m4.key_len, KFK_BATCH_MAX - BLOB_SPARE);
    landed_t at4 = produce(big, &m4);
    for (int i = 1; i <= OTHER_KEYS; i++) {
        st_key("order-o", i, key, sizeof(key));
        produce_order(&e, p, key, 1);
    }
    ck_assert_int_eq(at1.partition, at2.partition);
    ck_assert_int_eq(at2.partition, at3.partition);

    saga_consumer_t *c = start_consumer(&e, group);
    int64_t want = 4 + 2 * OTHER_KEYS;
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", want, WAIT_MS), want);
    ck_assert_str_eq(effects_of(&e, k), "0,1,2,3");
    ck_assert_int_eq(st_i64(&e, "SELECT count(DISTINCT key) FROM effects"), 1 + OTHER_KEYS);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM (SELECT key FROM effects GROUP BY key"
                                " HAVING string_agg(seq::text, ',' ORDER BY id) <> '0,1') AS k"),
                     1); /* every other key: 0 then 1 */

    static st_record_t dlq[8];
    ck_assert_uint_eq(st_consume(&e, e.dlq, dlq, 8, 4, WAIT_MS), 4);

    /* ~1 MB: whole, value and headers as they came. */
    const st_record_t *d1 = dead_letter_of(&e, dlq, 4, at1);
    ck_assert_ptr_null(st_header(d1, "dlq_value_truncated"));
    ck_assert_uint_eq(d1->len, m1.len);
    ck_assert_int_eq(memcmp(d1->value, m1.value, m1.len), 0);
    ck_assert_str_eq(st_header(d1, "ce_id"), id1);
    ck_assert_str_eq(d1->key, k);

    /* At the limit: the key and headers, the value cut to fit, the cut said. */
    const st_record_t *d2 = dead_letter_of(&e, dlq, 4, at2);
    ck_assert_str_eq(st_header(d2, "dlq_value_truncated"), "true");
    char bytes[24];
    snprintf(bytes, sizeof(bytes), "%zu", m2.len);
    ck_assert_str_eq(st_header(d2, "dlq_value_bytes"), bytes);
    ck_assert_uint_gt(d2->len, 0);
    ck_assert_uint_lt(d2->len, m2.len);
    ck_assert_int_eq(memcmp(d2->value, m2.value, d2->len), 0);
    ck_assert_str_eq(st_header(d2, "ce_id"), id2);
    ck_assert_str_eq(st_header(d2, "dlq_code"), err_code_name(ERR_INVALID));
    ck_assert_ptr_nonnull(st_header(d2, "dlq_error"));
    ck_assert_ptr_null(st_header(d2, "dlq_headers_omitted"));
    ck_assert_str_eq(d2->key, k);

    /* Headers filling the record: bare, the key and the dlq_* headers only. */
    const st_record_t *d3 = dead_letter_of(&e, dlq, 4, at3);
    ck_assert_str_eq(st_header(d3, "dlq_headers_omitted"), "true");
    ck_assert_str_eq(st_header(d3, "dlq_value_truncated"), "true");
    ck_assert_str_eq(st_header(d3, "dlq_value_bytes"), "100");
    ck_assert_ptr_null(st_header(d3, "x-blob"));
    ck_assert_ptr_null(st_header(d3, "ce_id"));
    ck_assert_uint_eq(d3->len, 0);
    ck_assert_str_eq(d3->key, k);
    ck_assert_ptr_null(st_header(d3, "dlq_key_omitted"));

    /* A key filling the record: not even the key. */
    const st_record_t *d4 = dead_letter_of(&e, dlq, 4, at4);
    ck_assert_str_eq(st_header(d4, "dlq_key_omitted"), "true");
    ck_assert_str_eq(st_header(d4, "dlq_headers_omitted"), "true");
    ck_assert_str_eq(st_header(d4, "dlq_value_bytes"), "10");
    ck_assert_str_eq(d4->key, "");
    ck_assert_uint_eq(d4->len, 0);

    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_total", NULL), 4);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_truncated_total", NULL), 3);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"dlq\""), 4);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_dropped_total", NULL), 0);

    /* Still consuming. */
    produce_order(&e, p, k, 4);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", want + 1, WAIT_MS), want + 1);
    ck_assert_str_eq(effects_of(&e, k), "0,1,2,3,4");

    saga_consumer_stop(c);
    kfk_producer_free(big);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

#define DLQ_TOPIC_MAX "2048"
#define LONG_KEY      3000

START_TEST(test_dead_letter_refused_for_good_goes_bare_then_is_skipped_and_committed)
{
    /* A dead-letter topic that takes less than the source topic: a whole copy of a
     * 20 kB poison record is refused for good (the broker's MSG_SIZE_TOO_LARGE), so a
     * bare copy follows; a record whose key alone exceeds that topic's limit cannot
     * be dead-lettered at all, so it is skipped. */
    static const char *const dlq_conf[] = {"max.message.bytes", DLQ_TOPIC_MAX, NULL};
    st_env_t e;
    st_setup_with(&e, "orefused", dlq_conf);
    kfk_producer_t *p = new_producer(&e);
    char group[ST_NAME_MAX], id[UUID_STR_LEN];
    st_name("test-saga-oversize", '-', group, sizeof(group));
    char *long_key = arena_alloc(e.a, LONG_KEY + 1);
    memset(long_key, 'k', LONG_KEY);
    long_key[LONG_KEY] = '\0';

    produce_order(&e, p, "order-r-00", 0);
    produce_order(&e, p, long_key, 0);
    kfk_out_msg_t refused = ce_message(&e, "order-r-00", id, NULL);
    refused.len = 20000;
    refused.value = garbage(&e, refused.len);
    landed_t at_refused = produce(p, &refused);
    kfk_out_msg_t dropped = ce_message(&e, long_key, id, NULL);
    dropped.len = 10;
    dropped.value = garbage(&e, dropped.len);
    produce(p, &dropped);
    produce_order(&e, p, "order-r-00", 1);
    produce_order(&e, p, long_key, 1);
    produce_order(&e, p, "order-r-01", 0);

    saga_consumer_t *c = start_consumer(&e, group);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 5, WAIT_MS), 5);
    ck_assert_str_eq(effects_of(&e, "order-r-00"), "0,1");
    ck_assert_str_eq(effects_of(&e, long_key), "0,1");
    int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
    while (topic_metric(&e, "kafka_events_dlq_dropped_total", NULL) < 1 &&
           clock_mono_us() < deadline)
        clock_sleep_ms(50);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_dropped_total", NULL), 1);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"dropped\""), 1);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_total", NULL), 1);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_truncated_total", NULL), 1);

    static st_record_t dlq[4];
    ck_assert_uint_eq(st_consume(&e, e.dlq, dlq, 4, 1, WAIT_MS / 3), 1);
    const st_record_t *d = dead_letter_of(&e, dlq, 1, at_refused);
    ck_assert_str_eq(st_header(d, "dlq_headers_omitted"), "true");
    ck_assert_str_eq(st_header(d, "dlq_value_bytes"), "20000");
    ck_assert_uint_eq(d->len, 0);
    ck_assert_str_eq(d->key, "order-r-00");

    /* Its offset was committed like any other: the next member of the group starts
     * after it and meets neither poison record again. */
    saga_consumer_stop(c);
    c = start_consumer(&e, group);
    produce_order(&e, p, long_key, 2);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 6, WAIT_MS), 6);
    ck_assert_str_eq(effects_of(&e, long_key), "0,1,2");
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_dropped_total", NULL), 1);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_total", NULL), 1);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM effects"), 6);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

static Suite *saga_oversize_suite(void)
{
    Suite *s = suite_create("saga_oversize");
    tcase_add_test(check_case(s, "limits", ST_TIMEOUT_S * 2),
                   test_producer_and_topics_agree_on_the_maximum_size);
    tcase_add_test(check_case(s, "oversize", ST_TIMEOUT_S * 2),
                   test_poison_records_at_the_size_limits_are_dead_lettered_and_partitions_move_on);
    tcase_add_test(check_case(s, "refused", ST_TIMEOUT_S * 2),
                   test_dead_letter_refused_for_good_goes_bare_then_is_skipped_and_committed);
    return s;
}

int main(void)
{
    return check_run(saga_oversize_suite(), CK_FORK_GETENV);
}
