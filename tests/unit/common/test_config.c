/*
 * config: every setting type from the environment, defaults, required settings,
 * error messages that name the variable and what it accepts, durations, the
 * masking of secrets in the effective-configuration log line, and the --help text.
 */
#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_stdout.h"
#include "check_util.h"
#include "common/config.h"

#define TEST_TIMEOUT_S 10

struct settings {
    const char *db_url;
    const char *api_key;
    const char *name;
    int64_t pool_size;
    bool debug;
    int64_t timeout_ms;
};

static const cfg_entry_t table[] = {
    {"TEST_DB_URL", CFG_STR, 0, 0, "postgresql://app:hunter2@db:5432/orders?sslmode=disable",
     offsetof(struct settings, db_url), "PostgreSQL URI"},
    {"TEST_API_KEY", CFG_SECRET, 0, 0, NULL, offsetof(struct settings, api_key), "the API key"},
    {"TEST_NAME", CFG_STR, 2, 8, "order", offsetof(struct settings, name), "service name"},
    {"TEST_POOL_SIZE", CFG_INT, 1, 64, "8", offsetof(struct settings, pool_size), "pool size"},
    {"TEST_DEBUG", CFG_BOOL, 0, 0, "false", offsetof(struct settings, debug), "debug mode"},
    {"TEST_TIMEOUT", CFG_DURATION, 1000, 3600000, "30s", offsetof(struct settings, timeout_ms),
     "saga timeout"},
};
#define TABLE_N (sizeof(table) / sizeof(table[0]))

/* Loads the table with only the required key set plus `name=value` (if any). */
static int load_with(const char *name, const char *value, struct settings *s, err_t *err)
{
    setenv("TEST_API_KEY", "s3cr3t-key", 1);
    if (name != NULL)
        setenv(name, value, 1);
    memset(s, 0, sizeof(*s));
    return cfg_load(table, TABLE_N, s, err);
}

/* Expects value for `name` to be refused with exactly `message`. */
static void assert_refused(const char *name, const char *value, const char *message)
{
    struct settings s;
    err_t err = ERR_INIT;
    ck_assert_int_eq(load_with(name, value, &s, &err), ERR_INVALID);
    ck_assert_int_eq(err.code, ERR_INVALID);
    ck_assert_str_eq(err.msg, message);
}

START_TEST(test_defaults_apply_when_unset)
{
    struct settings s;
    err_t err = ERR_INIT;
    ck_assert_int_eq(load_with(NULL, NULL, &s, &err), 0);
    ck_assert_str_eq(s.db_url, "postgresql://app:hunter2@db:5432/orders?sslmode=disable");
    ck_assert_str_eq(s.api_key, "s3cr3t-key");
    ck_assert_str_eq(s.name, "order");
    ck_assert_int_eq(s.pool_size, 8);
    ck_assert(!s.debug);
    ck_assert_int_eq(s.timeout_ms, 30000);
}
END_TEST

START_TEST(test_every_type_is_read_from_the_environment)
{
    setenv("TEST_DB_URL", "postgresql://localhost/x", 1);
    setenv("TEST_NAME", "gateway", 1);
    setenv("TEST_POOL_SIZE", "64", 1);
    setenv("TEST_DEBUG", "TRUE", 1);
    setenv("TEST_TIMEOUT", "5m", 1);
    struct settings s;
    err_t err = ERR_INIT;
    ck_assert_int_eq(load_with(NULL, NULL, &s, &err), 0);
    ck_assert_str_eq(s.db_url, "postgresql://localhost/x");
    ck_assert_str_eq(s.name, "gateway");
    ck_assert_int_eq(s.pool_size, 64);
    ck_assert(s.debug);
    ck_assert_int_eq(s.timeout_ms, 300000);
}
END_TEST

START_TEST(test_empty_variable_counts_as_unset)
{
    struct settings s;
    err_t err = ERR_INIT;
    ck_assert_int_eq(load_with("TEST_POOL_SIZE", "", &s, &err), 0);
    ck_assert_int_eq(s.pool_size, 8);
}
END_TEST

START_TEST(test_bools_accept_true_false_1_0)
{
    const char *yes[] = {"true", "True", "1"}, *no[] = {"false", "FALSE", "0"};
    struct settings s;
    err_t err = ERR_INIT;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(load_with("TEST_DEBUG", yes[i], &s, &err), 0);
        ck_assert(s.debug);
        ck_assert_int_eq(load_with("TEST_DEBUG", no[i], &s, &err), 0);
        ck_assert(!s.debug);
    }
    assert_refused("TEST_DEBUG", "yes", "TEST_DEBUG: must be true, false, 1 or 0, got \"yes\"");
}
END_TEST

START_TEST(test_missing_required_names_the_variable)
{
    unsetenv("TEST_API_KEY");
    struct settings s;
    err_t err = ERR_INIT;
    ck_assert_int_eq(cfg_load(table, TABLE_N, &s, &err), ERR_INVALID);
    ck_assert_str_eq(err.msg, "TEST_API_KEY: required but not set (the API key)");
}
END_TEST

START_TEST(test_bad_integers_name_the_variable_and_range)
{
    assert_refused("TEST_POOL_SIZE", "abc",
                   "TEST_POOL_SIZE: must be an integer in [1, 64], got \"abc\"");
    assert_refused("TEST_POOL_SIZE", "65",
                   "TEST_POOL_SIZE: must be an integer in [1, 64], got \"65\"");
    assert_refused("TEST_POOL_SIZE", "0",
                   "TEST_POOL_SIZE: must be an integer in [1, 64], got \"0\"");
    assert_refused("TEST_POOL_SIZE", "8x",
                   "TEST_POOL_SIZE: must be an integer in [1, 64], got \"8x\"");
    assert_refused("TEST_POOL_SIZE", "99999999999999999999",
                   "TEST_POOL_SIZE: must be an integer in [1, 64], got \"99999999999999999999\"");
}
END_TEST

START_TEST(test_bad_durations_name_the_variable_and_range)
{
#define DURATION_MSG                                                                               \
    "TEST_TIMEOUT: must be a duration (250ms, 2s, 5m, 1h or milliseconds) in [1s, 1h], got \"%s\""
    const char *bad[] = {"soon", "999ms", "2h", "1.5s", "-1s", "10 s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char expected[256];
        snprintf(expected, sizeof(expected), DURATION_MSG, bad[i]);
        assert_refused("TEST_TIMEOUT", bad[i], expected);
    }
}
END_TEST

START_TEST(test_string_length_bounds_are_checked)
{
    assert_refused("TEST_NAME", "x", "TEST_NAME: length must be in [2, 8] bytes, got 1");
    assert_refused("TEST_NAME", "much-too-long",
                   "TEST_NAME: length must be in [2, 8] bytes, got 13");
}
END_TEST

START_TEST(test_durations_parse_every_unit)
{
    struct {
        const char *text;
        int64_t ms;
    } ok[] = {{"250ms", 250},  {"2s", 2000},   {"5m", 300000},
              {"1h", 3600000}, {"1500", 1500}, {"0", 0}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t ms = -1;
        ck_assert_msg(cfg_parse_duration(ok[i].text, &ms) == 0, "rejected %s", ok[i].text);
        ck_assert_int_eq(ms, ok[i].ms);
    }
    const char *bad[] = {
        "", "s", "ms", "1x", "1 s", "-5", "+5s", "1.5h", "1d", "1hh", "9999999999999999h", NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = -1;
        ck_assert_msg(cfg_parse_duration(bad[i], &ms) == -1, "accepted %s", bad[i]);
        ck_assert_int_eq(ms, -1);
    }
}
END_TEST

/* The effective-configuration line for `s`, parsed; *raw gets the raw text. */
static json_t *logged_config(const struct settings *s, char **raw)
{
    capture_t cap;
    capture_begin(&cap);
    cfg_log(table, TABLE_N, s);
    *raw = capture_end(&cap);
    json_error_t jerr;
    json_t *j = json_loads(*raw, 0, &jerr);
    ck_assert_msg(j != NULL, "not JSON (%s): %s", jerr.text, *raw);
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    ck_assert_msg(json_is_string(v), "%s is not a string", key);
    return json_string_value(v);
}

START_TEST(test_log_masks_secrets_and_url_passwords)
{
    struct settings s;
    err_t err = ERR_INIT;
    ck_assert_int_eq(load_with("TEST_TIMEOUT", "1500", &s, &err), 0);
    char *raw;
    json_t *j = logged_config(&s, &raw);
    ck_assert_str_eq(jstr(j, "TEST_API_KEY"), "***");
    ck_assert_str_eq(jstr(j, "TEST_DB_URL"), "postgresql://app:***@db:5432/orders?sslmode=disable");
    ck_assert_str_eq(jstr(j, "TEST_NAME"), "order");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "TEST_POOL_SIZE")), 8);
    ck_assert(json_is_false(json_object_get(j, "TEST_DEBUG")));
    ck_assert_str_eq(jstr(j, "TEST_TIMEOUT"), "1500ms");
    ck_assert_ptr_null(strstr(raw, "s3cr3t"));
    ck_assert_ptr_null(strstr(raw, "hunter2"));
    json_decref(j);
    free(raw);
}
END_TEST

START_TEST(test_log_masks_every_url_password_form)
{
    struct {
        const char *url, *masked;
    } cases[] = {
        {"redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"},
        {"postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"},
        {"postgresql://user@host/db", "postgresql://user@host/db"},
        {"postgresql://host/db?user=u&password=pw&sslmode=require",
         "postgresql://host/db?user=u&password=***&sslmode=require"},
        {"host=db user=u password=pw dbname=x", "host=db user=u password=*** dbname=x"},
        {"plain-value", "plain-value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct settings s;
        err_t err = ERR_INIT;
        ck_assert_int_eq(load_with("TEST_DB_URL", cases[i].url, &s, &err), 0);
        char *raw;
        json_t *j = logged_config(&s, &raw);
        ck_assert_str_eq(jstr(j, "TEST_DB_URL"), cases[i].masked);
        json_decref(j);
        free(raw);
    }
}
END_TEST

/* What cfg_usage_print writes for `t`, NUL-terminated; free() it. */
static char *usage_text(const cfg_entry_t *t, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(cfg_usage_print(f, t, n), 0);
    ck_assert_int_eq(fclose(f), 0);
    return buf;
}

START_TEST(test_usage_lists_every_setting_with_default_meaning_and_range)
{
    char *text = usage_text(table, TABLE_N);
    ck_assert_str_eq(text, "  TEST_DB_URL=postgresql://app:***@db:5432/orders?sslmode=disable\n"
                           "                                    PostgreSQL URI [text]\n"
                           "  TEST_API_KEY (required)           the API key [secret; or from a "
                           "file: TEST_API_KEY_FILE=<path>]\n"
                           "  TEST_NAME=order                   service name [text, 2..8 bytes]\n"
                           "  TEST_POOL_SIZE=8                  pool size [integer 1..64]\n"
                           "  TEST_DEBUG=false                  debug mode [true or false]\n"
                           "  TEST_TIMEOUT=30s                  saga timeout [duration 1s..1h]\n");
    free(text);
}
END_TEST

START_TEST(test_usage_shows_defaults_not_the_environment)
{
    setenv("TEST_POOL_SIZE", "64", 1);
    setenv("TEST_API_KEY", "s3cr3t-key", 1);
    char *text = usage_text(table, TABLE_N);
    ck_assert_ptr_nonnull(strstr(text, "  TEST_POOL_SIZE=8 "));
    ck_assert_ptr_nonnull(strstr(text, "  TEST_API_KEY (required) "));
    ck_assert_ptr_null(strstr(text, "64 "));
    ck_assert_ptr_null(strstr(text, "s3cr3t"));
    free(text);
}
END_TEST

START_TEST(test_usage_masks_secret_defaults_and_keeps_empty_ones)
{
    static const cfg_entry_t secrets[] = {
        {"S_URL", CFG_SECRET, 1, 1024, "redis://:pw@r:6380/0", 0, "redis"},
        {"S_PLAIN", CFG_SECRET, 0, 0, "not-so-secret", 0, "token"},
        {"S_EMPTY", CFG_SECRET, 0, 4096, "", 0, "optional secret"},
        {"S_EXACT", CFG_STR, 5, 5, "HS256", 0, "algorithm"},
        {"S_MS", CFG_DURATION, 10, 90000, "250ms", 0, "poll"},
    };
    char *text = usage_text(secrets, sizeof(secrets) / sizeof(secrets[0]));
    ck_assert_str_eq(text, "  S_URL=redis://:***@r:6380/0       redis [secret, 1..1024 bytes; or "
                           "from a file: S_URL_FILE=<path>]\n"
                           "  S_PLAIN=***                       token [secret; or from a file: "
                           "S_PLAIN_FILE=<path>]\n"
                           "  S_EMPTY=                          optional secret [secret, 0..4096 "
                           "bytes; or from a file: S_EMPTY_FILE=<path>]\n"
                           "  S_EXACT=HS256                     algorithm [text, 5 bytes]\n"
                           "  S_MS=250ms                        poll [duration 10ms..90s]\n");
    free(text);
}
END_TEST

START_TEST(test_usage_reports_a_failed_stream)
{
    FILE *f = fopen("/dev/full", "w");
    ck_assert_ptr_nonnull(f);
    setvbuf(f, NULL, _IONBF, 0);
    ck_assert_int_eq(cfg_usage_print(f, table, TABLE_N), -1);
    fclose(f);
}
END_TEST

/* Writes text to a new temporary file; returns its path (free it). */
static char *secret_file(const char *text, size_t n)
{
    char *path = strdup("/tmp/test_config_secret_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

START_TEST(test_secrets_come_from_files_named_by_name_file)
{
    struct settings s;
    err_t err = ERR_INIT;
    unsetenv("TEST_API_KEY");
    /* One trailing newline (echo) or CRLF is not part of the secret; other bytes are. */
    const char *cases[][2] = {{"from-a-file\n", "from-a-file"},
                              {"crlf\r\n", "crlf"},
                              {" spaced \n\n", " spaced \n"},
                              {"no-newline", "no-newline"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = secret_file(cases[i][0], strlen(cases[i][0]));
        setenv("TEST_API_KEY_FILE", path, 1);
        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(cfg_load(table, TABLE_N, &s, &err), 0);
        ck_assert_str_eq(s.api_key, cases[i][1]);
        unlink(path);
        free(path);
    }
    /* The file's value is checked like the variable's: length bounds. */
    static const cfg_entry_t bounded[] = {
        {"TEST_SHORT", CFG_SECRET, 1, 4, "", 0, "short"},
    };
    char *path = secret_file("12345\n", 6);
    setenv("TEST_SHORT_FILE", path, 1);
    const char *v = NULL;
    ck_assert_int_eq(cfg_load(bounded, 1, &v, &err), ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "holds more than 4 bytes"));
    unsetenv("TEST_SHORT_FILE");
    unlink(path);
    free(path);
}
END_TEST

START_TEST(test_secret_files_refuse_ambiguity_and_bad_files)
{
    struct settings s;
    err_t err = ERR_INIT;
    char *path = secret_file("x\n", 2);
    setenv("TEST_API_KEY_FILE", path, 1);
    ck_assert_int_eq(load_with(NULL, NULL, &s, &err), ERR_INVALID); /* sets TEST_API_KEY too */
    ck_assert_str_eq(err.msg, "TEST_API_KEY and TEST_API_KEY_FILE are both set: give one");
    unsetenv("TEST_API_KEY");
    setenv("TEST_API_KEY_FILE", "/nonexistent/secret", 1);
    ck_assert_int_eq(cfg_load(table, TABLE_N, &s, &err), ERR_INVALID);
    ck_assert_str_eq(
        err.msg, "TEST_API_KEY_FILE: cannot read /nonexistent/secret: No such file or directory");
    char *empty = secret_file("\n", 1);
    setenv("TEST_API_KEY_FILE", empty, 1);
    ck_assert_int_eq(cfg_load(table, TABLE_N, &s, &err), ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "is empty"));
    char *nul = secret_file("a\0b", 3);
    setenv("TEST_API_KEY_FILE", nul, 1);
    ck_assert_int_eq(cfg_load(table, TABLE_N, &s, &err), ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "NUL byte"));
    /* An empty NAME_FILE counts as unset, like every variable. */
    setenv("TEST_API_KEY_FILE", "", 1);
    setenv("TEST_API_KEY", "direct", 1);
    ck_assert_int_eq(cfg_load(table, TABLE_N, &s, &err), 0);
    ck_assert_str_eq(s.api_key, "direct");
    unsetenv("TEST_API_KEY_FILE");
    for (char **p = (char *[]){path, empty, nul, NULL}; *p != NULL; p++) {
        unlink(*p);
        free(*p);
    }
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    tcase_add_test(check_case(s, "defaults", TEST_TIMEOUT_S), test_defaults_apply_when_unset);
    tcase_add_test(check_case(s, "secret_files", TEST_TIMEOUT_S),
                   test_secrets_come_from_files_named_by_name_file);
    tcase_add_test(check_case(s, "secret_file_errors", TEST_TIMEOUT_S),
                   test_secret_files_refuse_ambiguity_and_bad_files);
    tcase_add_test(check_case(s, "types", TEST_TIMEOUT_S),
                   test_every_type_is_read_from_the_environment);
    tcase_add_test(check_case(s, "empty", TEST_TIMEOUT_S), test_empty_variable_counts_as_unset);
    tcase_add_test(check_case(s, "bools", TEST_TIMEOUT_S), test_bools_accept_true_false_1_0);
    tcase_add_test(check_case(s, "required", TEST_TIMEOUT_S),
                   test_missing_required_names_the_variable);
    tcase_add_test(check_case(s, "bad_int", TEST_TIMEOUT_S),
                   test_bad_integers_name_the_variable_and_range);
    tcase_add_test(check_case(s, "bad_duration", TEST_TIMEOUT_S),
                   test_bad_durations_name_the_variable_and_range);
    tcase_add_test(check_case(s, "str_len", TEST_TIMEOUT_S), test_string_length_bounds_are_checked);
    tcase_add_test(check_case(s, "durations", TEST_TIMEOUT_S), test_durations_parse_every_unit);
    tcase_add_test(check_case(s, "log_mask", TEST_TIMEOUT_S),
                   test_log_masks_secrets_and_url_passwords);
    tcase_add_test(check_case(s, "log_urls", TEST_TIMEOUT_S),
                   test_log_masks_every_url_password_form);
    tcase_add_test(check_case(s, "usage", TEST_TIMEOUT_S),
                   test_usage_lists_every_setting_with_default_meaning_and_range);
    tcase_add_test(check_case(s, "usage_env", TEST_TIMEOUT_S),
                   test_usage_shows_defaults_not_the_environment);
    tcase_add_test(check_case(s, "usage_secrets", TEST_TIMEOUT_S),
                   test_usage_masks_secret_defaults_and_keeps_empty_ones);
    tcase_add_test(check_case(s, "usage_error", TEST_TIMEOUT_S),
                   test_usage_reports_a_failed_stream);
    return s;
}

int main(void)
{
    return check_run(config_suite(), CK_FORK_GETENV);
}
