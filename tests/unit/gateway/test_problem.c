/*
 * problem: the gRPC → HTTP status table of docs/architecture.md §2 and the RFC 9457 body.
 */
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "problem.h"

START_TEST(test_problem_maps_every_status_as_the_design_says)
{
    static const struct {
        int code, http;
    } table[] = {
        {ERR_INVALID, 400},       {ERR_RANGE, 400},     {ERR_UNAUTHENTICATED, 401},
        {ERR_PERMISSION, 403},    {ERR_NOT_FOUND, 404}, {ERR_CONFLICT, 409},
        {ERR_ABORTED, 409},       {ERR_EXHAUSTED, 429}, {ERR_UNAVAILABLE, 503},
        {ERR_TIMEOUT, 504},       {ERR_INTERNAL, 500},  {ERR_UNKNOWN, 500},
        {ERR_UNIMPLEMENTED, 500}, {ERR_DATA_LOSS, 500}, {ERR_CANCELLED, 500},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        ck_assert_int_eq(problem_http_status(table[i].code, 409), table[i].http);
    ck_assert_int_eq(problem_http_status(ERR_PRECONDITION, 409), 409);
    ck_assert_int_eq(problem_http_status(ERR_PRECONDITION, 422), 422);
}
END_TEST

START_TEST(test_problem_carries_field_errors_renamed)
{
    err_t err = ERR_INIT;
    err_field_add(&err, "lines[1].quantity", "must be 1..1000");
    err_field_add(&err, "idempotency_key", "already used with another request");
    static const char *const renames[] = {"idempotency_key", "Idempotency-Key", NULL};
    int status;
    json_t *p = problem_from_err(&err, 409, renames, "req-1", &status);
    ck_assert_int_eq(status, 400);
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")),
                     "https://shop-fleet.example/problems/validation");
    ck_assert_str_eq(json_string_value(json_object_get(p, "title")), "Bad Request");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 400);
    ck_assert_str_eq(json_string_value(json_object_get(p, "detail")), "invalid request");
    ck_assert_str_eq(json_string_value(json_object_get(p, "request_id")), "req-1");
    json_t *errors = json_object_get(p, "errors");
    ck_assert_int_eq(json_array_size(errors), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "field")),
                     "lines[1].quantity");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 1), "field")),
                     "Idempotency-Key");
    json_decref(p);
}
END_TEST

START_TEST(test_problem_keeps_texts_that_are_not_utf8)
{
    /* A query parameter's name as the client sent it ("?%FF=1") used to vanish from
     * errors[] (json_pack refused it; found by tests/fuzz/fuzz_http), and a detail
     * cut inside a character made problem_new return NULL. */
    err_t err = ERR_INIT;
    err_field_add(&err, "query.\xff", "unknown query parameter");
    err_set_client(&err, ERR_INVALID, "sku \xe2\x82 is taken");
    err_field_add(&err, "sku", "cut \xc3");
    int status;
    json_t *p = problem_from_err(&err, 409, NULL, "req-1", &status);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(json_string_value(json_object_get(p, "detail")),
                     "sku \xef\xbf\xbd\xef\xbf\xbd is taken");
    json_t *errors = json_object_get(p, "errors");
    ck_assert_uint_eq(json_array_size(errors), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "field")),
                     "query.\xef\xbf\xbd");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 1), "description")),
                     "cut \xef\xbf\xbd");
    json_decref(p);
}
END_TEST

START_TEST(test_problem_never_leaks_internal_messages)
{
    err_t err = ERR_INIT;
    err_set(&err, ERR_INTERNAL, "pq: relation \"orders\" does not exist at db_query.c:42");
    int status;
    json_t *p = problem_from_err(&err, 409, NULL, "req-2", &status);
    ck_assert_int_eq(status, 500);
    char *s = json_dumps(p, 0);
    ck_assert_ptr_null(strstr(s, "orders"));
    ck_assert_ptr_null(strstr(s, "db_query"));
    ck_assert_ptr_nonnull(strstr(s, "req-2"));
    ck_assert_ptr_null(json_object_get(p, "errors"));
    free(s);
    json_decref(p);
    err_set(&err, ERR_UNAVAILABLE, "connect to 10.1.2.3:50051 refused");
    p = problem_from_err(&err, 409, NULL, NULL, &status);
    ck_assert_int_eq(status, 503);
    s = json_dumps(p, 0);
    ck_assert_ptr_null(strstr(s, "10.1.2.3"));
    free(s);
    json_decref(p);
}
END_TEST

START_TEST(test_problem_passes_client_errors_through)
{
    err_t err = ERR_INIT;
    err_set_client(&err, ERR_PRECONDITION, "order is still being processed");
    int status;
    json_t *p = problem_from_err(&err, 409, NULL, NULL, &status);
    ck_assert_int_eq(status, 409);
    ck_assert_str_eq(json_string_value(json_object_get(p, "detail")),
                     "order is still being processed");
    ck_assert_str_eq(json_string_value(json_object_get(p, "title")), "Conflict");
    ck_assert_ptr_null(json_object_get(p, "request_id"));
    json_decref(p);
}
END_TEST

/* A 4xx code on an error not written for the client (a database's 22008 taken as
 * INVALID_ARGUMENT, a library's RESOURCE_EXHAUSTED) is a 5xx with a fixed sentence. */
START_TEST(test_problem_never_answers_4xx_for_internal_errors)
{
    static const struct {
        int code, http;
        const char *msg;
    } cases[] = {
        {ERR_INVALID, 500, "postgresql 22008: interval out of range"},
        {ERR_CONFLICT, 500, "postgresql 23505 (constraint orders_pkey): duplicate key value"},
        {ERR_PRECONDITION, 500, "postgresql 23503 (constraint lines_fk): violates foreign key"},
        {ERR_NOT_FOUND, 500, "no such file /etc/shop/key"},
        {ERR_EXHAUSTED, 503, "Received message larger than max (5000000 vs. 4194304)"},
        {ERR_ABORTED, 503, "postgresql 40001: could not serialize access"},
        {ERR_UNAUTHENTICATED, 500, "token claim sub missing"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err_t err = ERR_INIT;
        err_set(&err, cases[i].code, "%s", cases[i].msg);
        err_field_add(&err, "page_token", "internal detail");
        int status;
        json_t *p = problem_from_err(&err, 409, NULL, "req-3", &status);
        ck_assert_int_eq(status, cases[i].http);
        char *s = json_dumps(p, 0);
        ck_assert_msg(strstr(s, "postgresql") == NULL && strstr(s, "max") == NULL &&
                          strstr(s, "constraint") == NULL && strstr(s, "internal detail") == NULL &&
                          strstr(s, "token claim") == NULL && strstr(s, "/etc") == NULL,
                      "leaked: %s", s);
        ck_assert_ptr_null(json_object_get(p, "errors"));
        free(s);
        json_decref(p);
    }
}
END_TEST

/* One type URI per class of error, each distinct; statuses outside the table keep
 * about:blank (RFC 9457 §4.2.1). */
START_TEST(test_problem_types_tell_the_classes_apart)
{
    static const struct {
        int status;
        const char *type;
    } table[] = {
        {400, "validation"},
        {401, "unauthenticated"},
        {403, "forbidden"},
        {404, "not-found"},
        {405, "method-not-allowed"},
        {409, "conflict"},
        {412, "precondition-failed"},
        {413, "payload-too-large"},
        {415, "unsupported-media-type"},
        {422, "unprocessable"},
        {429, "rate-limited"},
        {500, "internal"},
        {503, "unavailable"},
        {504, "timeout"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "https://shop-fleet.example/problems/%s", table[i].type);
        json_t *p = problem_new(table[i].status, NULL, NULL, NULL, NULL);
        ck_assert_str_eq(json_string_value(json_object_get(p, "type")), want);
        ck_assert_str_eq(json_string_value(json_object_get(p, "title")),
                         problem_title(table[i].status));
        ck_assert_str_ne(problem_title(table[i].status), "Error");
        json_decref(p);
    }
    ck_assert_str_eq(problem_type(418), "about:blank");
}
END_TEST

/* draft-ietf-httpapi-idempotency-key-header: a key reused with another request is 422
 * with its own type; other ALREADY_EXISTS answers stay 409 conflict. */
START_TEST(test_problem_reused_idempotency_key_is_422)
{
    static const char *const renames[] = {"idempotency_key", "Idempotency-Key", NULL};
    err_t err = ERR_INIT;
    err_set_client(&err, ERR_CONFLICT, "idempotency key already used with other lines");
    err_field_add(&err, "idempotency_key", "was already used with other lines");
    int status;
    json_t *p = problem_from_err(&err, 409, renames, "req-4", &status);
    ck_assert_int_eq(status, 422);
    ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 422);
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")),
                     "https://shop-fleet.example/problems/idempotency-key-reused");
    ck_assert_str_eq(json_string_value(json_object_get(p, "title")), "Idempotency-Key Reused");
    ck_assert_str_eq(json_string_value(
                         json_object_get(json_array_get(json_object_get(p, "errors"), 0), "field")),
                     "Idempotency-Key");
    json_decref(p);

    err_t taken = ERR_INIT;
    err_set_client(&taken, ERR_CONFLICT, "sku is taken");
    err_field_add(&taken, "sku", "is taken");
    p = problem_from_err(&taken, 422, NULL, NULL, &status);
    ck_assert_int_eq(status, 409);
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")),
                     "https://shop-fleet.example/problems/conflict");
    json_decref(p);

    /* Not written for the client: still a 5xx, whatever its fields say. */
    err_t internal = ERR_INIT;
    err_set(&internal, ERR_CONFLICT, "postgresql 23505 (constraint idempotency_keys_pkey)");
    err_field_add(&internal, "idempotency_key", "internal detail");
    p = problem_from_err(&internal, 409, NULL, NULL, &status);
    ck_assert_int_eq(status, 500);
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")),
                     "https://shop-fleet.example/problems/internal");
    json_decref(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("problem");
    TCase *tc = check_case(s, "problem", 10);
    tcase_add_test(tc, test_problem_maps_every_status_as_the_design_says);
    tcase_add_test(tc, test_problem_carries_field_errors_renamed);
    tcase_add_test(tc, test_problem_keeps_texts_that_are_not_utf8);
    tcase_add_test(tc, test_problem_never_leaks_internal_messages);
    tcase_add_test(tc, test_problem_passes_client_errors_through);
    tcase_add_test(tc, test_problem_never_answers_4xx_for_internal_errors);
    tcase_add_test(tc, test_problem_types_tell_the_classes_apart);
    tcase_add_test(tc, test_problem_reused_idempotency_key_is_422);
    return check_run(s, CK_FORK_GETENV);
}
