/*
 * err: the gRPC mapping both ways, names, field violations and safe truncation.
 */
#include <check.h>
#include <string.h>

#include "check_util.h"
#include "common/err.h"

#define TEST_TIMEOUT_S 10

START_TEST(test_codes_map_to_grpc_status_and_back)
{
    for (int status = 0; status <= 16; status++) {
        int code = err_from_grpc_status(status);
        ck_assert_int_eq(code, -status);
        ck_assert_int_eq(err_to_grpc_status(code), status);
    }
    ck_assert_int_eq(err_to_grpc_status(ERR_INVALID), 3);
    ck_assert_int_eq(err_to_grpc_status(ERR_UNAVAILABLE), 14);
    ck_assert_int_eq(err_to_grpc_status(ERR_UNAUTHENTICATED), 16);
}
END_TEST

START_TEST(test_unknown_codes_map_to_unknown)
{
    ck_assert_int_eq(err_to_grpc_status(-17), 2);
    ck_assert_int_eq(err_to_grpc_status(5), 2);
    ck_assert_int_eq(err_from_grpc_status(17), ERR_UNKNOWN);
    ck_assert_int_eq(err_from_grpc_status(-1), ERR_UNKNOWN);
    ck_assert_str_eq(err_code_name(-99), "UNKNOWN");
    ck_assert_str_eq(err_code_name(3), "UNKNOWN");
}
END_TEST

START_TEST(test_code_names_are_grpc_names)
{
    ck_assert_str_eq(err_code_name(ERR_OK), "OK");
    ck_assert_str_eq(err_code_name(ERR_INVALID), "INVALID_ARGUMENT");
    ck_assert_str_eq(err_code_name(ERR_TIMEOUT), "DEADLINE_EXCEEDED");
    ck_assert_str_eq(err_code_name(ERR_NOT_FOUND), "NOT_FOUND");
    ck_assert_str_eq(err_code_name(ERR_CONFLICT), "ALREADY_EXISTS");
    ck_assert_str_eq(err_code_name(ERR_PRECONDITION), "FAILED_PRECONDITION");
    ck_assert_str_eq(err_code_name(ERR_UNAUTHENTICATED), "UNAUTHENTICATED");
}
END_TEST

START_TEST(test_set_formats_and_returns_the_code)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(err_set(&err, ERR_NOT_FOUND, "order %s not found", "o-1"), ERR_NOT_FOUND);
    ck_assert_int_eq(err.code, ERR_NOT_FOUND);
    ck_assert_str_eq(err.msg, "order o-1 not found");
    ck_assert_int_eq(err_set(NULL, ERR_INTERNAL, "ignored"), ERR_INTERNAL);
}
END_TEST

START_TEST(test_set_truncates_long_messages)
{
    err_t err = ERR_INIT;
    char long_text[1000];
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    err_set(&err, ERR_INTERNAL, "%s", long_text);
    ck_assert_uint_eq(strlen(err.msg), ERR_MSG_MAX - 1);
}
END_TEST

START_TEST(test_truncation_never_splits_a_utf8_character)
{
    /* "é" is two bytes; ERR_MSG_MAX - 1 is odd, so the cut falls inside one. */
    char text[600] = "";
    for (size_t i = 0; i + 2 < sizeof(text); i += 2)
        strcat(text, "\xc3\xa9");
    err_t err = ERR_INIT;
    err_set(&err, ERR_INTERNAL, "%s", text);
    size_t len = strlen(err.msg);
    ck_assert_uint_eq(len, ERR_MSG_MAX - 2);
    ck_assert_msg((unsigned char)err.msg[len - 1] == 0xA9, "message ends inside a character");
}
END_TEST

START_TEST(test_field_add_makes_invalid_request)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(err_field_add(&err, "lines[2].quantity", "must be at least %d", 1),
                     ERR_INVALID);
    ck_assert_str_eq(err.msg, "invalid request");
    ck_assert_uint_eq(err.n_fields, 1);
    ck_assert_str_eq(err.fields[0].field, "lines[2].quantity");
    ck_assert_str_eq(err.fields[0].description, "must be at least 1");
}
END_TEST

START_TEST(test_field_add_keeps_an_existing_code)
{
    err_t err = ERR_INIT;
    err_set(&err, ERR_PRECONDITION, "order is not pending");
    ck_assert_int_eq(err_field_add(&err, "status", "is confirmed"), ERR_PRECONDITION);
    ck_assert_str_eq(err.msg, "order is not pending");
    ck_assert_uint_eq(err.n_fields, 1);
}
END_TEST

START_TEST(test_field_add_beyond_max_is_dropped)
{
    err_t err = ERR_INIT;
    for (int i = 0; i < ERR_FIELDS_MAX + 5; i++)
        err_field_add(&err, "f", "violation %d", i);
    ck_assert_uint_eq(err.n_fields, ERR_FIELDS_MAX);
    ck_assert_str_eq(err.fields[ERR_FIELDS_MAX - 1].description, "violation 15");
    ck_assert_int_eq(err_field_add(NULL, "f", "x"), ERR_INVALID);
}
END_TEST

START_TEST(test_field_add_truncates_path_and_description)
{
    char path[300], desc[300];
    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    memset(desc, 'd', sizeof(desc) - 1);
    desc[sizeof(desc) - 1] = '\0';
    err_t err = ERR_INIT;
    err_field_add(&err, path, "%s", desc);
    ck_assert_uint_eq(strlen(err.fields[0].field), ERR_FIELD_MAX - 1);
    ck_assert_uint_eq(strlen(err.fields[0].description), ERR_DESC_MAX - 1);
}
END_TEST

START_TEST(test_clear_resets_everything)
{
    err_t err = ERR_INIT;
    err_field_add(&err, "a", "b");
    err_clear(&err);
    ck_assert_int_eq(err.code, ERR_OK);
    ck_assert_str_eq(err.msg, "");
    ck_assert_uint_eq(err.n_fields, 0);
    err_clear(NULL);
}
END_TEST

START_TEST(test_transient_codes_are_the_retryable_ones)
{
    ck_assert(err_is_transient(ERR_UNAVAILABLE));
    ck_assert(err_is_transient(ERR_ABORTED));
    ck_assert(err_is_transient(ERR_TIMEOUT));
    ck_assert(err_is_transient(ERR_EXHAUSTED));
    ck_assert(!err_is_transient(ERR_OK));
    ck_assert(!err_is_transient(ERR_INVALID));
    ck_assert(!err_is_transient(ERR_NOT_FOUND));
    ck_assert(!err_is_transient(ERR_INTERNAL));
    ck_assert(!err_is_transient(ERR_PRECONDITION));
}
END_TEST

START_TEST(test_only_client_messages_are_for_the_client)
{
    err_t err = ERR_INIT;
    ck_assert(!err.for_client);
    err_set(&err, ERR_NOT_FOUND, "postgresql 02000: no data");
    ck_assert(!err.for_client);
    ck_assert_int_eq(err_set_client(&err, ERR_NOT_FOUND, "order not found"), ERR_NOT_FOUND);
    ck_assert(err.for_client);
    ck_assert_str_eq(err.msg, "order not found");
    err_set(&err, ERR_INTERNAL, "again for the log");
    ck_assert(!err.for_client);
    err_clear(&err);
    err_field_add(&err, "limit", "must be 0..100");
    ck_assert(err.for_client);
    err_clear(&err);
    ck_assert(!err.for_client);
    /* A violation added to a database error does not make it the client's. */
    err_set(&err, ERR_PRECONDITION, "postgresql 23514 (constraint c): check violated");
    err_field_add(&err, "delta", "would make available negative");
    ck_assert(!err.for_client);
    ck_assert_int_eq(err_set_client(NULL, ERR_INVALID, "x"), ERR_INVALID);
}
END_TEST

START_TEST(test_redact_keeps_client_errors_and_hides_the_rest)
{
    err_t err = ERR_INIT;
    err_set_client(&err, ERR_NOT_FOUND, "order not found");
    ck_assert(!err_redact(&err));
    ck_assert_int_eq(err.code, ERR_NOT_FOUND);
    ck_assert_str_eq(err.msg, "order not found");
    err_clear(&err);
    err_field_add(&err, "page_token", "is not a valid page token");
    ck_assert(!err_redact(&err));
    ck_assert_uint_eq(err.n_fields, 1);

    static const struct {
        int code, shown;
        const char *msg;
    } cases[] = {
        {ERR_INVALID, ERR_INTERNAL, "internal error"},
        {ERR_CONFLICT, ERR_INTERNAL, "internal error"},
        {ERR_PRECONDITION, ERR_INTERNAL, "internal error"},
        {ERR_NOT_FOUND, ERR_INTERNAL, "internal error"},
        {ERR_PERMISSION, ERR_INTERNAL, "internal error"},
        {ERR_UNAUTHENTICATED, ERR_INTERNAL, "internal error"},
        {ERR_RANGE, ERR_INTERNAL, "internal error"},
        {ERR_UNKNOWN, ERR_INTERNAL, "internal error"},
        {ERR_INTERNAL, ERR_INTERNAL, "internal error"},
        {ERR_UNAVAILABLE, ERR_UNAVAILABLE, "service unavailable, retry later"},
        {ERR_EXHAUSTED, ERR_UNAVAILABLE, "service unavailable, retry later"},
        {ERR_ABORTED, ERR_UNAVAILABLE, "service unavailable, retry later"},
        {ERR_TIMEOUT, ERR_TIMEOUT, "deadline exceeded"},
        {ERR_CANCELLED, ERR_CANCELLED, "cancelled"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err_clear(&err);
        err_set(&err, cases[i].code, "postgresql 22008: interval out of range");
        err_field_add(&err, "page_token", "from the database");
        ck_assert(err_redact(&err));
        ck_assert_int_eq(err.code, cases[i].shown);
        ck_assert_str_eq(err.msg, cases[i].msg);
        ck_assert_uint_eq(err.n_fields, 0);
        ck_assert(err.for_client);
        ck_assert(!err_redact(&err)); /* once redacted, for the client */
    }
    /* A handler that failed without a code still answers INTERNAL. */
    err_clear(&err);
    ck_assert(err_redact(&err));
    ck_assert_int_eq(err.code, ERR_INTERNAL);
    ck_assert_str_eq(err.msg, "internal error");
    ck_assert(!err_redact(NULL));
}
END_TEST

static Suite *err_suite(void)
{
    Suite *s = suite_create("err");
    tcase_add_test(check_case(s, "grpc", TEST_TIMEOUT_S), test_codes_map_to_grpc_status_and_back);
    tcase_add_test(check_case(s, "unknown", TEST_TIMEOUT_S), test_unknown_codes_map_to_unknown);
    tcase_add_test(check_case(s, "names", TEST_TIMEOUT_S), test_code_names_are_grpc_names);
    tcase_add_test(check_case(s, "set", TEST_TIMEOUT_S), test_set_formats_and_returns_the_code);
    tcase_add_test(check_case(s, "truncate", TEST_TIMEOUT_S), test_set_truncates_long_messages);
    tcase_add_test(check_case(s, "truncate_utf8", TEST_TIMEOUT_S),
                   test_truncation_never_splits_a_utf8_character);
    tcase_add_test(check_case(s, "field_add", TEST_TIMEOUT_S),
                   test_field_add_makes_invalid_request);
    tcase_add_test(check_case(s, "field_keep_code", TEST_TIMEOUT_S),
                   test_field_add_keeps_an_existing_code);
    tcase_add_test(check_case(s, "field_max", TEST_TIMEOUT_S),
                   test_field_add_beyond_max_is_dropped);
    tcase_add_test(check_case(s, "field_truncate", TEST_TIMEOUT_S),
                   test_field_add_truncates_path_and_description);
    tcase_add_test(check_case(s, "clear", TEST_TIMEOUT_S), test_clear_resets_everything);
    tcase_add_test(check_case(s, "for_client", TEST_TIMEOUT_S),
                   test_only_client_messages_are_for_the_client);
    tcase_add_test(check_case(s, "redact", TEST_TIMEOUT_S),
                   test_redact_keeps_client_errors_and_hides_the_rest);
    tcase_add_test(check_case(s, "transient", TEST_TIMEOUT_S),
                   test_transient_codes_are_the_retryable_ones);
    return s;
}

int main(void)
{
    return check_run(err_suite(), CK_FORK_GETENV);
}
