/*
 * log: every line is one valid JSON object (checked by parsing it with jansson), with
 * escaping, UTF-8 repair, level filtering, per-thread context and the line cap.
 */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "capture_stdout.h"
#include "check_util.h"
#include "common/clock.h"
#include "common/log.h"

#define TEST_TIMEOUT_S 20

/* Parses every line of out; returns how many there were, the first in *first. */
static size_t parse_lines(char *out, json_t **first)
{
    size_t n = 0;
    *first = NULL;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        ck_assert_msg(j != NULL, "not JSON (%s): %s", jerr.text, line);
        ck_assert(json_is_object(j));
        if (n++ == 0)
            *first = j;
        else
            json_decref(j);
    }
    return n;
}

/* The single line in raw, parsed; json_decref it. */
static json_t *only_line(const char *raw)
{
    char *copy = strdup(raw);
    json_t *j;
    ck_assert_uint_eq(parse_lines(copy, &j), 1);
    free(copy);
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    ck_assert_msg(json_is_string(v), "%s is not a string", key);
    return json_string_value(v);
}

START_TEST(test_line_has_ts_level_svc_msg_then_fields)
{
    log_init("order", LOG_LEVEL_INFO);
    char *raw;
    int64_t before = clock_now_us();
    capture_t cap;
    capture_begin(&cap);
    LOG_INFO("order confirmed", LOG_STR("order_id", "o-1"), LOG_INT("total_cents", -12345678901LL),
             LOG_DBL("ratio", 0.25), LOG_BOOL("paid", 7));
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_str_eq(jstr(j, "level"), "info");
    ck_assert_str_eq(jstr(j, "svc"), "order");
    ck_assert_str_eq(jstr(j, "msg"), "order confirmed");
    ck_assert_str_eq(jstr(j, "order_id"), "o-1");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "total_cents")), -12345678901LL);
    ck_assert_double_eq(json_real_value(json_object_get(j, "ratio")), 0.25);
    ck_assert(json_is_true(json_object_get(j, "paid")));
    /* "2026-11-24T19:00:00.123Z": UTC with milliseconds, close to now. */
    const char *ts = jstr(j, "ts");
    ck_assert_uint_eq(strlen(ts), 24);
    ck_assert_int_eq(ts[23], 'Z');
    int64_t us;
    ck_assert_int_eq(clock_parse_rfc3339(ts, &us), 0);
    ck_assert_int_ge(us, before / 1000 * 1000);
    ck_assert_int_le(us, clock_now_us());
    /* The fixed keys come first, in this order, and the line ends with a newline. */
    ck_assert_msg(strncmp(raw, "{\"ts\":", 6) == 0, "%s", raw);
    ck_assert_ptr_nonnull(strstr(raw, "\"level\":\"info\",\"svc\":\"order\",\"msg\":"));
    ck_assert_int_eq(raw[strlen(raw) - 1], '\n');
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_message_without_fields_compiles_and_logs)
{
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_WARN("bare");
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_str_eq(jstr(j, "level"), "warn");
    ck_assert_str_eq(jstr(j, "svc"), "-");
    ck_assert_str_eq(jstr(j, "msg"), "bare");
    ck_assert_uint_eq(json_object_size(j), 4);
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_quotes_backslashes_and_control_chars_are_escaped)
{
    const char *nasty = "a\"b\\c\nd\te\rf\x01g\x1fh\x7f";
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_ERR(nasty, LOG_STR("k\"ey", nasty));
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_str_eq(jstr(j, "msg"), nasty);
    ck_assert_str_eq(jstr(j, "k\"ey"), nasty);
    ck_assert_ptr_nonnull(strstr(raw, "\\u0001"));
    ck_assert_ptr_nonnull(strstr(raw, "\\u001f"));
    ck_assert_ptr_nonnull(strstr(raw, "a\\\"b\\\\c\\nd\\te\\rf"));
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_invalid_utf8_becomes_replacement_chars)
{
    /* A stray byte, a cut sequence, an overlong '/', a surrogate, then valid text. */
    const char *bad = "x\xff|\xe2\x82|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|";
    const char *good = "é€😀";
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_INFO("utf8", LOG_STR("bad", bad), LOG_STR("good", good));
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_str_eq(jstr(j, "bad"), "x\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                                     "\xef\xbf\xbd\xef\xbf\xbd|"
                                     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                                     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|");
    ck_assert_str_eq(jstr(j, "good"), good);
    json_decref(j);
    free(raw);
}
END_TEST

static int side_effects;

static const char *counted(const char *s)
{
    side_effects++;
    return s;
}

START_TEST(test_lines_below_the_level_format_nothing)
{
    log_init("svc", LOG_LEVEL_WARN);
    capture_t cap;
    capture_begin(&cap);
    LOG_DEBUG("debug", LOG_STR("k", counted("v")));
    LOG_INFO("info", LOG_STR("k", counted("v")));
    char *raw = capture_end(&cap);
    ck_assert_str_eq(raw, "");
    ck_assert_int_eq(side_effects, 0);
    free(raw);

    capture_begin(&cap);
    LOG_ERR("error", LOG_STR("k", counted("v")));
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_str_eq(jstr(j, "level"), "error");
    ck_assert_int_eq(side_effects, 1);
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_level_names_parse)
{
    log_level_t l;
    ck_assert_int_eq(log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(log_level_parse("error", &l), 0);
    ck_assert_int_eq(l, LOG_LEVEL_ERROR);
    ck_assert_int_eq(log_level_parse("warn", &l), 0);
    ck_assert_int_eq(l, LOG_LEVEL_WARN);
    ck_assert_int_eq(log_level_parse("verbose", &l), -1);
    ck_assert_int_eq(log_level_parse(NULL, &l), -1);
    ck_assert_int_eq(log__level, LOG_LEVEL_INFO);
}
END_TEST

static void *log_from_other_thread(void *arg)
{
    LOG_INFO("other thread");
    return arg;
}

START_TEST(test_context_ids_are_added_per_thread_until_cleared)
{
    log_ctx_set("req-1", "trace-1");
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_INFO("in call", LOG_INT("n", 1));
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_str_eq(jstr(j, "request_id"), "req-1");
    ck_assert_str_eq(jstr(j, "trace_id"), "trace-1");
    ck_assert_ptr_nonnull(strstr(raw, "\"request_id\":\"req-1\",\"trace_id\":\"trace-1\",\"n\":1"));
    json_decref(j);
    free(raw);

    pthread_t t;
    capture_begin(&cap);
    pthread_create(&t, NULL, log_from_other_thread, NULL);
    pthread_join(t, NULL);
    raw = capture_end(&cap);
    j = only_line(raw);
    ck_assert_ptr_null(json_object_get(j, "request_id"));
    json_decref(j);
    free(raw);

    log_ctx_set(NULL, NULL);
    capture_begin(&cap);
    LOG_INFO("after call");
    raw = capture_end(&cap);
    j = only_line(raw);
    ck_assert_ptr_null(json_object_get(j, "request_id"));
    ck_assert_ptr_null(json_object_get(j, "trace_id"));
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_context_ids_are_cut_to_64_bytes)
{
    char id[200];
    memset(id, 'r', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    log_ctx_set(id, NULL);
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_INFO("x");
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_uint_eq(strlen(jstr(j, "request_id")), 64);
    ck_assert_ptr_null(json_object_get(j, "trace_id"));
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_long_value_is_cut_with_ellipsis_and_line_stays_json)
{
    size_t n = 100000;
    char *big = malloc(n + 1);
    /* Quotes expand when escaped: the cut must still land between escapes. */
    for (size_t i = 0; i < n; i++)
        big[i] = i % 3 == 0 ? '"' : 'v';
    big[n] = '\0';
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_INFO("big", LOG_STR("a", big), LOG_STR("b", big), LOG_STR("c", big), LOG_INT("after", 5));
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert_uint_le(strlen(raw), 8192);
    const char *a = jstr(j, "a");
    ck_assert_uint_gt(strlen(a), 1000);
    ck_assert_str_eq(a + strlen(a) - 3, "\xe2\x80\xa6");
    ck_assert_uint_eq(strncmp(a, big, strlen(a) - 3), 0);
    /* Fields that do not fit are dropped whole, never half-written. */
    ck_assert_ptr_null(json_object_get(j, "c"));
    json_decref(j);
    free(raw);
    free(big);
}
END_TEST

START_TEST(test_durations_in_us_read_as_milliseconds)
{
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_INFO("x", LOG_MS("zero", 0), LOG_MS("short", 5), LOG_MS("some", 1234),
             LOG_MS("long", 12345678), LOG_MS("neg", -5), LOG_MS("exact_s", 2000000));
    raw = capture_end(&cap);
    /* The text, not only the value: three decimals, no exponent. */
    ck_assert_ptr_nonnull(strstr(raw, "\"zero\":0.000,"));
    ck_assert_ptr_nonnull(strstr(raw, "\"short\":0.005,"));
    ck_assert_ptr_nonnull(strstr(raw, "\"some\":1.234,"));
    ck_assert_ptr_nonnull(strstr(raw, "\"long\":12345.678,"));
    ck_assert_ptr_nonnull(strstr(raw, "\"neg\":-0.005,"));
    json_t *j = only_line(raw);
    ck_assert_double_eq_tol(json_real_value(json_object_get(j, "some")), 1.234, 1e-9);
    ck_assert_double_eq_tol(json_real_value(json_object_get(j, "exact_s")), 2000.0, 1e-9);
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_non_finite_doubles_are_null)
{
    char *raw;
    capture_t cap;
    capture_begin(&cap);
    LOG_INFO("x", LOG_DBL("nan", 0.0 / 0.0), LOG_DBL("inf", 1.0 / 0.0), LOG_DBL("third", 1.0 / 3));
    raw = capture_end(&cap);
    json_t *j = only_line(raw);
    ck_assert(json_is_null(json_object_get(j, "nan")));
    ck_assert(json_is_null(json_object_get(j, "inf")));
    ck_assert_double_eq(json_real_value(json_object_get(j, "third")), 1.0 / 3);
    json_decref(j);
    free(raw);
}
END_TEST

#define THREADS          4
#define LINES_PER_THREAD 500

static void *log_many(void *arg)
{
    for (int i = 0; i < LINES_PER_THREAD; i++)
        LOG_INFO(
            "concurrent", LOG_INT("thread", (intptr_t)arg), LOG_INT("i", i),
            LOG_STR("pad", "................................................................"));
    return NULL;
}

START_TEST(test_concurrent_lines_never_interleave)
{
    capture_t cap;
    capture_begin(&cap);
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, log_many, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *raw = capture_end(&cap);
    json_t *first;
    ck_assert_uint_eq(parse_lines(raw, &first), THREADS * LINES_PER_THREAD);
    json_decref(first);
    free(raw);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    tcase_add_test(check_case(s, "line", TEST_TIMEOUT_S),
                   test_line_has_ts_level_svc_msg_then_fields);
    tcase_add_test(check_case(s, "no_fields", TEST_TIMEOUT_S),
                   test_message_without_fields_compiles_and_logs);
    tcase_add_test(check_case(s, "escape", TEST_TIMEOUT_S),
                   test_quotes_backslashes_and_control_chars_are_escaped);
    tcase_add_test(check_case(s, "utf8", TEST_TIMEOUT_S),
                   test_invalid_utf8_becomes_replacement_chars);
    tcase_add_test(check_case(s, "level", TEST_TIMEOUT_S),
                   test_lines_below_the_level_format_nothing);
    tcase_add_test(check_case(s, "level_parse", TEST_TIMEOUT_S), test_level_names_parse);
    tcase_add_test(check_case(s, "ctx", TEST_TIMEOUT_S),
                   test_context_ids_are_added_per_thread_until_cleared);
    tcase_add_test(check_case(s, "ctx_cut", TEST_TIMEOUT_S), test_context_ids_are_cut_to_64_bytes);
    tcase_add_test(check_case(s, "cap", TEST_TIMEOUT_S),
                   test_long_value_is_cut_with_ellipsis_and_line_stays_json);
    tcase_add_test(check_case(s, "doubles", TEST_TIMEOUT_S), test_non_finite_doubles_are_null);
    tcase_add_test(check_case(s, "durations", TEST_TIMEOUT_S),
                   test_durations_in_us_read_as_milliseconds);
    tcase_add_test(check_case(s, "threads", TEST_TIMEOUT_S),
                   test_concurrent_lines_never_interleave);
    return s;
}

int main(void)
{
    return check_run(log_suite(), CK_FORK_GETENV);
}
