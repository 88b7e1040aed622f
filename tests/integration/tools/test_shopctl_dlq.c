/*
 * shopctl dlq (tools/shopctl, docs/dlq.md) against the test stack's Kafka and a real
 * product-svc: an OrderCreated whose handler fails (a trigger in product-svc's
 * database refuses the order's reservation rows, standing for a bug or missing
 * data) is dead-lettered; `shopctl dlq list` shows it, `show` decodes it; once the
 * cause is gone, `replay` puts it back and product-svc applies it once, logging who
 * replayed it; a second replay is a duplicate for the inbox. Also the refusals: bad
 * usage, unknown coordinates and topics, a truncated entry, and --dry-run.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../product/product_test_support.h"
#include "common/clock.h"
#include "kafka_auth.h"
#include "saga_events.h"

#define ST_TCASE_TIMEOUT_S 240

static svc_proc_t svc;
static int admin_port;

/* What one shopctl run printed and its exit status. */
typedef struct st_run {
    char *out; /* stdout, plus stderr when asked */
    int status;
} st_run_t;

/* Runs `shopctl <args>` (args quoted by the caller) with the stack's environment. */
static st_run_t st_shopctl(arena_t *a, bool with_stderr, const char *args)
{
    char *cmd = arena_sprintf(a, "%s %s%s", SHOPCTL, args, with_stderr ? " 2>&1" : "");
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, n = 0, got;
    char *buf = arena_alloc(a, cap);
    while ((got = fread(buf + n, 1, cap - 1 - n, p)) > 0)
        n += got;
    buf[n] = '\0';
    int st = pclose(p);
    return (st_run_t){.out = buf, .status = WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}

/* The line of `out` that contains `needle`, in `a`; NULL if none. */
static const char *st_line(arena_t *a, const char *out, const char *needle)
{
    const char *hit = strstr(out, needle);
    if (!hit)
        return NULL;
    const char *start = hit;
    while (start > out && start[-1] != '\n')
        start--;
    const char *end = strchr(hit, '\n');
    return arena_strndup(a, start, end ? (size_t)(end - start) : strlen(start));
}

/* The product-svc counter kafka_events_duplicate_total{topic="order.events"}. */
static long st_duplicates(arena_t *a)
{
    st_run_t r = {0};
    char *cmd = arena_sprintf(a, "curl -sf http://127.0.0.1:%d/metrics", admin_port);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    static const char metric[] = "kafka_events_duplicate_total{topic=\"order.events\"} ";
    char line[1024];
    long v = -1;
    while (fgets(line, sizeof(line), p))
        if (strncmp(line, metric, sizeof(metric) - 1) == 0)
            v = strtol(line + sizeof(metric) - 1, NULL, 10);
    r.status = pclose(p);
    ck_assert_int_eq(r.status, 0);
    return v;
}

/* Makes product-svc's reservation of `order` fail (block true), or removes the trigger
 * and its table again (block false), so that nothing of it outlives the test. */
static void st_block(pt_t *t, const char *order, bool block)
{
    if (!block) {
        pt_i64(t, "DROP TRIGGER IF EXISTS shopctl_test_fail ON reservations", NULL, NULL);
        pt_i64(t, "DROP FUNCTION IF EXISTS shopctl_test_fail()", NULL, NULL);
        pt_i64(t, "DROP TABLE IF EXISTS shopctl_test_block", NULL, NULL);
        return;
    }
    pt_i64(t, "CREATE TABLE IF NOT EXISTS shopctl_test_block (order_id uuid PRIMARY KEY)", NULL,
           NULL);
    pt_i64(t,
           "CREATE OR REPLACE FUNCTION shopctl_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$"
           " BEGIN IF EXISTS (SELECT 1 FROM shopctl_test_block WHERE order_id = NEW.order_id)"
           " THEN RAISE EXCEPTION 'shopctl test: reservations of this order fail'; END IF;"
           " RETURN NEW; END $$",
           NULL, NULL);
    pt_i64(t,
           "CREATE OR REPLACE TRIGGER shopctl_test_fail BEFORE INSERT ON reservations"
           " FOR EACH ROW EXECUTE FUNCTION shopctl_test_fail()",
           NULL, NULL);
    pt_i64(t, "INSERT INTO shopctl_test_block VALUES ($1::uuid)", order, NULL);
}

/* The list --json entry of ce_id, or NULL (owned). */
static json_t *st_listed(arena_t *a, const char *ce_id)
{
    st_run_t r = st_shopctl(a, false, "dlq list --topic order.events.dlq --json");
    ck_assert_int_eq(r.status, 0);
    const char *line = st_line(a, r.out, ce_id);
    if (!line)
        return NULL;
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    ck_assert_msg(j != NULL, "list --json printed no JSON: %s", line);
    return j;
}

static void st_assert_stock(pt_t *t, const char *product, int64_t available, int64_t reserved)
{
    pt_stock_t s = pt_stock(t, product);
    ck_assert_int_eq(s.available, available);
    ck_assert_int_eq(s.reserved, reserved);
}

START_TEST(test_dead_letter_round_trip_list_show_fix_replay_once)
{
    /* Only this instance may handle the events: its log is what is checked. */
    svc_proc_t *const procs[] = {&svc};
    svc_wait_partitions(procs, 1, svc_topic_partitions("order.events"), PT_TIMEOUT_MS);
    pt_t t;
    pt_open(&t, &svc);
    const char *p = pt_product(&t, 10), *order = pt_order(&t);
    st_block(&t, order, true);
    const char *ce_id = pt_order_created(&t, order, (pt_line_t[]){{p, 3}}, 1, NULL);
    ck_assert_uint_eq(
        saga_dlq_wait(getenv("KAFKA_BROKERS"), "order.events.dlq", order, PT_TIMEOUT_MS), 1);
    st_assert_stock(&t, p, 10, 0);

    /* list: one line for people, one JSON object per line for scripts. */
    json_t *e = st_listed(t.a, ce_id);
    ck_assert_ptr_nonnull(e);
    const char *coords = arena_strdup(t.a, json_string_value(json_object_get(e, "dlq")));
    ck_assert_str_eq(json_string_value(json_object_get(e, "topic")), "order.events.dlq");
    ck_assert_str_eq(json_string_value(json_object_get(e, "source_topic")), "order.events");
    ck_assert_str_eq(json_string_value(json_object_get(e, "ce_type")),
                     "shop.events.v1.OrderCreated");
    ck_assert_str_eq(json_string_value(json_object_get(e, "dlq_code")), "INTERNAL");
    ck_assert_int_eq(json_integer_value(json_object_get(e, "dlq_attempts")), 5);
    ck_assert_str_eq(json_string_value(json_object_get(e, "dlq_group")), "product-svc");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(e, "dlq_error")),
                                 "reservations of this order fail"));
    ck_assert(json_is_false(json_object_get(e, "value_truncated")));
    ck_assert(json_is_string(json_object_get(e, "timestamp")));
    ck_assert_int_ge(json_integer_value(json_object_get(e, "source_offset")), 0);
    json_decref(e);
    st_run_t r = st_shopctl(t.a, false, "dlq list");
    ck_assert_int_eq(r.status, 0);
    const char *line = st_line(t.a, r.out, ce_id);
    ck_assert_ptr_nonnull(line);
    ck_assert_msg(strncmp(line, coords, strlen(coords)) == 0 &&
                      strstr(line, "shop.events.v1.OrderCreated") &&
                      strstr(line, "code=INTERNAL attempts=5 group=product-svc") &&
                      strstr(line, "from=order.events:"),
                  "list line: %s", line);

    /* show: every header and the payload as JSON. */
    r = st_shopctl(t.a, false, arena_sprintf(t.a, "dlq show --json %s", coords));
    ck_assert_int_eq(r.status, 0);
    json_error_t je;
    json_t *s = json_loads(r.out, 0, &je);
    ck_assert_ptr_nonnull(s);
    json_t *payload = json_object_get(s, "payload");
    ck_assert_str_eq(json_string_value(json_object_get(payload, "order_id")), order);
    json_t *l0 = json_array_get(json_object_get(payload, "lines"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(l0, "product_id")), p);
    ck_assert_int_eq(json_integer_value(json_object_get(l0, "quantity")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(s, "key")), order);
    size_t i;
    json_t *h;
    bool saw_ce_id = false, saw_error = false;
    json_array_foreach(json_object_get(s, "headers"), i, h)
    {
        const char *name = json_string_value(json_object_get(h, "name"));
        const char *value = json_string_value(json_object_get(h, "value"));
        saw_ce_id |= strcmp(name, "ce_id") == 0 && strcmp(value, ce_id) == 0;
        saw_error |= strcmp(name, "dlq_error") == 0;
    }
    ck_assert(saw_ce_id && saw_error);
    json_decref(s);

    /* --dry-run produces nothing. */
    r = st_shopctl(
        t.a, false,
        arena_sprintf(t.a, "dlq replay --dry-run --by alice --reason 'a test' %s", coords));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "would-replay"));
    clock_sleep_ms(2000);
    ck_assert_int_eq(
        pt_i64(&t, "SELECT count(*) FROM processed_events WHERE ce_id = $1", ce_id, NULL), 0);
    st_assert_stock(&t, p, 10, 0);

    /* The cause goes away; the replay is applied once, and the log says who. */
    st_block(&t, order, false);
    long dups = st_duplicates(t.a);
    ck_assert_int_ge(dups, 0);
    r = st_shopctl(t.a, false,
                   arena_sprintf(t.a, "dlq replay --by alice --reason 'trigger fixed' %s", coords));
    ck_assert_msg(r.status == 0 && strncmp(r.out, "replayed ", 9) == 0, "replay: %s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, ce_id));
    pt_wait_processed(&t, ce_id);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    ck_assert_uint_eq(pt_count(&t, "StockReserved", order), 1);
    st_assert_stock(&t, p, 7, 3);
    ck_assert_str_eq(pt_order_state(&t, order), "RESERVED");
    ck_assert_int_eq(
        svc_log_count(svc.log, "\"replayed event handled\"", "\"replayed_by\":\"alice\""), 1);
    ck_assert_int_eq(svc_log_count(svc.log, ce_id, "\"outcome\":\"ok\""), 1);
    ck_assert_int_eq(svc_log_count(svc.log, ce_id, "\"replay_reason\":\"trigger fixed\""), 1);

    /* Again: the inbox knows the ce_id. */
    r = st_shopctl(t.a, false,
                   arena_sprintf(t.a, "dlq replay --json --by bob --reason again %s", coords));
    ck_assert_int_eq(r.status, 0);
    json_t *out = json_loads(r.out, 0, &je);
    ck_assert_str_eq(json_string_value(json_object_get(out, "outcome")), "replayed");
    ck_assert_str_eq(json_string_value(json_object_get(out, "ce_id")), ce_id);
    json_decref(out);
    int64_t end = clock_mono_us() + (int64_t)PT_TIMEOUT_MS * 1000;
    while (svc_log_count(svc.log, ce_id, "\"outcome\":\"duplicate\"") == 0 && clock_mono_us() < end)
        clock_sleep_ms(50);
    ck_assert_int_eq(svc_log_count(svc.log, ce_id, "\"replayed_by\":\"bob\""), 1);
    ck_assert_int_eq(st_duplicates(t.a), dups + 1);
    st_assert_stock(&t, p, 7, 3);
    ck_assert_int_eq(pt_emitted(&t, order, "StockReserved"), 1);
    pt_close(&t);
}
END_TEST

START_TEST(test_truncated_entry_is_refused_unless_forced_and_shown_as_base64)
{
    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    ka_admin();
    kfk_producer_t *prod = kfk_producer_new(getenv("KAFKA_BROKERS"), "test-shopctl", NULL, &err);
    ck_assert_ptr_nonnull(prod);
    char id[UUID_STR_LEN], key[UUID_STR_LEN];
    uuid_new(id);
    uuid_new(key);
    /* What the saga consumer writes for a record too large to copy whole. */
    const kfk_header_t h[] = {
        {"ce_id", id, strlen(id)},
        {"ce_type", "shop.events.v1.OrderCreated", 27},
        {"dlq_error", "handler failed", 14},
        {"dlq_code", "INTERNAL", 8},
        {"dlq_attempts", "5", 1},
        {"dlq_source_topic", "order.events", 12},
        {"dlq_partition", "0", 1},
        {"dlq_offset", "7", 1},
        {"dlq_group", "product-svc", 11},
        {"dlq_value_truncated", "true", 4},
        {"dlq_value_bytes", "2000000", 7},
    };
    kfk_out_msg_t m = {.topic = "order.events.dlq",
                       .key = key,
                       .key_len = strlen(key),
                       .value = "\x0a\x24partial",
                       .len = 9,
                       .headers = h,
                       .n_headers = sizeof(h) / sizeof(h[0])};
    kfk_batch_t *b = kfk_batch_new(1);
    ck_assert_int_eq(kfk_produce(prod, &m, b, &err), 0);
    ck_assert_int_eq(kfk_batch_wait(b, 30000), 0);
    int32_t part;
    int64_t off;
    ck_assert_int_eq(kfk_batch_status(b, 0, &part, &off, &err), 0);
    kfk_batch_free(b);
    kfk_producer_free(prod);
    const char *coords = arena_sprintf(a, "order.events.dlq:%d:%lld", (int)part, (long long)off);

    json_t *e = st_listed(a, id);
    ck_assert_ptr_nonnull(e);
    ck_assert(json_is_true(json_object_get(e, "value_truncated")));
    json_decref(e);
    st_run_t r = st_shopctl(a, false, arena_sprintf(a, "dlq show --json %s", coords));
    ck_assert_int_eq(r.status, 0);
    json_error_t je;
    json_t *s = json_loads(r.out, 0, &je);
    ck_assert_ptr_null(json_object_get(s, "payload"));
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(s, "payload_error")), "truncated"));
    ck_assert_str_eq(json_string_value(json_object_get(s, "payload_base64url")), "CiRwYXJ0aWFs");
    json_decref(s);

    r = st_shopctl(a, true, arena_sprintf(a, "dlq replay --by alice --reason x %s", coords));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strncmp(r.out, "refused ", 8) == 0 && strstr(r.out, "truncated") &&
                      strstr(r.out, "--force"),
                  "replay of a truncated entry: %s", r.out);
    r = st_shopctl(
        a, true, arena_sprintf(a, "dlq replay --force --dry-run --by alice --reason x %s", coords));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "would-replay"));
    /* --all goes through every entry of the topic and refuses this one among them. */
    r = st_shopctl(a, true,
                   "dlq replay --all --dry-run --json --topic order.events.dlq --by a --reason x");
    ck_assert_int_eq(r.status, 1);
    const char *line = st_line(a, r.out, id);
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_nonnull(strstr(line, "\"outcome\":\"refused\""));
    ck_assert_ptr_nonnull(strstr(line, coords));
    arena_free(a);
}
END_TEST

START_TEST(test_bad_usage_and_unknown_entries_fail_with_a_message)
{
    arena_t *a = arena_new(0);
    static const struct {
        const char *args;
        int status;
        const char *says;
    } cases[] = {
        {"", 2, "no command given"},
        {"dlq frobnicate", 2, "unknown subcommand"},
        {"dlq list --topic order.events", 2, "not a dead-letter topic"},
        {"dlq list --limit 0", 2, "--limit must be a positive integer"},
        {"dlq list --bogus", 2, "unknown option"},
        {"dlq list --topic nosuch.dlq", 1, "no topic nosuch.dlq"},
        {"dlq show", 2, "give one"},
        {"dlq show order.events.dlq:zero:1", 2, "is not <dlq-topic>:<partition>:<offset>"},
        {"dlq show order.events:0:1", 2, "not in a dead-letter topic"},
        {"dlq show order.events.dlq:99:0", 1, "has 6 partitions"},
        {"dlq show order.events.dlq:0:999999999", 1, "order.events.dlq:0:999999999"},
        {"dlq show nosuch.dlq:0:0", 1, "no topic nosuch.dlq"},
        {"dlq replay order.events.dlq:0:0", 2, "--by WHO and --reason TEXT are required"},
        {"dlq replay --by a --reason b", 2, "or --all, not both or neither"},
        {"dlq replay --all --by a --reason b order.events.dlq:0:0", 2, "not both or neither"},
        {"dlq replay --by a --reason b order.events.dlq:0:999999999", 1,
         "order.events.dlq:0:999999999"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        st_run_t r = st_shopctl(a, true, cases[i].args);
        ck_assert_msg(r.status == cases[i].status && strstr(r.out, cases[i].says),
                      "shopctl %s: status %d, output: %s", cases[i].args, r.status, r.out);
    }
    st_run_t r = st_shopctl(a, true, "--help");
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "KAFKA_BROKERS="));
    ck_assert_ptr_nonnull(strstr(r.out, "KAFKA_USERNAME="));
    ck_assert_ptr_nonnull(strstr(r.out, "KAFKA_PASSWORD_FILE"));
    /* A refused login fails the command and says why, once, naming the settings. */
    if (getenv("KAFKA_USERNAME")) {
        char *pass_file = arena_strdup(a, getenv("KAFKA_PASSWORD_FILE"));
        unsetenv("KAFKA_PASSWORD_FILE");
        setenv("KAFKA_PASSWORD", "wrong", 1);
        setenv("SHOPCTL_TIMEOUT", "3s", 1);
        r = st_shopctl(a, true, "dlq list");
        unsetenv("KAFKA_PASSWORD");
        unsetenv("SHOPCTL_TIMEOUT");
        setenv("KAFKA_PASSWORD_FILE", pass_file, 1);
        const char *said = strstr(r.out, "kafka authentication failed: check KAFKA_USERNAME and "
                                         "KAFKA_PASSWORD");
        ck_assert_msg(r.status == 1 && said, "status %d, output: %s", r.status, r.out);
        ck_assert_msg(!strstr(said + 1, "kafka authentication failed") &&
                          !strstr(r.out, "\"facility\":\"FAIL\""),
                      "the refused login is said more than once: %s", r.out);
    }
    r = st_shopctl(a, true, "dlq list --limit 1 | true");
    ck_assert_int_eq(r.status, 0);
    arena_free(a);
}
END_TEST

static Suite *shopctl_suite(void)
{
    Suite *s = suite_create("shopctl_dlq");
    TCase *tc = tcase_create("dlq");
    tcase_set_timeout(tc, ST_TCASE_TIMEOUT_S);
    tcase_add_test(tc, test_bad_usage_and_unknown_entries_fail_with_a_message);
    tcase_add_test(tc, test_truncated_entry_is_refused_unless_forced_and_shown_as_base64);
    tcase_add_test(tc, test_dead_letter_round_trip_list_show_fix_replay_once);
    suite_add_tcase(s, tc);
    return s;
}

/* A free TCP port for the service's admin HTTP (its /metrics). */
static int st_free_port(void)
{
    FILE *p = popen("/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", "
                    "0)); print(s.getsockname()[1])'",
                    "r");
    int port = 0;
    if (!p || fscanf(p, "%d", &port) != 1)
        port = 0;
    if (p)
        pclose(p);
    return port;
}

int main(void)
{
    int failed = 1;
    ka_operator_env(); /* shopctl runs as the stack's operator: admin */
    admin_port = st_free_port();
    char admin[64];
    snprintf(admin, sizeof(admin), "ADMIN_ADDR=127.0.0.1:%d", admin_port);
    char db[1024];
    snprintf(db, sizeof(db), "DATABASE_URL=%s", svc_env("PRODUCT_DATABASE_URL"));
    /* Failed attempts come fast, so the dead letter does too. */
    const char *env[] = {admin, db, "DB_POOL_SIZE=4", NULL};
    if (admin_port == 0 || svc_proc_start(&svc, PRODUCT_SVC, "product-svc-dlq", env) != 0)
        goto out;
    SRunner *sr = srunner_create(shopctl_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
out:
    if (svc.pid && svc_proc_end(&svc) != 0) {
        fprintf(stderr, "product-svc exited badly after SIGTERM, see %s\n", svc.log);
        failed++;
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
