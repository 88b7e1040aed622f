/*
 * auth: the verdicts that need no Redis — what a route asks for, a missing or
 * foreign scheme, a token that does not verify, a store that cannot be reached.
 * The verdicts that read the session and the budget are in
 * tests/integration/gateway/test_session.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "check_util.h"

#define SECRET "0123456789abcdef0123456789abcdef-test-secret"
#define NOW    1700000000

static jwt_keys_t *keys;
static redis_pool_t *pool;
static session_store_t *store;
static auth_t *auth;

static void setup(void)
{
    err_t err = ERR_INIT;
    keys = jwt_keys_new(&(jwt_keys_opts_t){.alg = "HS256",
                                           .secret = SECRET,
                                           .issuer = "shop-test",
                                           .audience = "shop-test",
                                           .ttl_s = 900},
                        &err);
    ck_assert_msg(keys != NULL, "%s", err.msg);
    /* Nobody listens on port 1: every Redis step fails ERR_UNAVAILABLE. */
    pool = redis_pool_new("redis://127.0.0.1:1", NULL, 1, 300, &err);
    ck_assert_msg(pool != NULL, "%s", err.msg);
    store = session_store_new(pool, "test:auth:", 60000);
    auth = auth_new(&(auth_opts_t){.keys = keys,
                                   .redis = pool,
                                   .store = store,
                                   .redis_prefix = "test:auth:",
                                   .user_request_limit = 10,
                                   .user_window_ms = 60000});
}

static void teardown(void)
{
    auth_free(auth);
    session_store_free(store);
    redis_pool_free(pool);
    jwt_keys_free(keys);
}

static char *bearer(const char *role)
{
    err_t err = ERR_INIT;
    char *t = jwt_token_issue(keys, "user-1", role, "sid-1", NOW, &err);
    ck_assert_msg(t != NULL, "%s", err.msg);
    size_t n = strlen(t) + 8;
    char *h = malloc(n);
    ck_assert_ptr_nonnull(h);
    snprintf(h, n, "Bearer %s", t);
    free(t);
    return h;
}

START_TEST(test_auth_routes_that_need_nothing_pass_anonymously)
{
    auth_verdict_t v;
    auth_check(auth, AUTH_NONE, "Bearer garbage", NOW, &v);
    ck_assert_int_eq(v.outcome, AUTH_OK);
    ck_assert(!v.identified && !v.counted);
    ck_assert_str_eq(v.claims.sub, "");
    auth_check(auth, AUTH_OPTIONAL, NULL, NOW, &v);
    ck_assert_int_eq(v.outcome, AUTH_OK);
    ck_assert(!v.identified && !v.counted);
}
END_TEST

START_TEST(test_auth_without_a_bearer_token_is_unauthenticated_and_says_so)
{
    static const char *const headers[] = {NULL, "", "Basic dXNlcjpwYXNz", "Bearer"};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        auth_verdict_t v;
        auth_check(auth, AUTH_USER, headers[i], NOW, &v);
        ck_assert_int_eq(v.outcome, AUTH_UNAUTHENTICATED);
        ck_assert_msg(v.token_missing, "%s", headers[i] ? headers[i] : "(none)");
        ck_assert(!v.identified && !v.counted);
    }
}
END_TEST

START_TEST(test_auth_a_token_that_does_not_verify_is_unauthenticated_when_sent)
{
    static const char *const headers[] = {"Bearer garbage", "bearer a.b.c", "Bearer "};
    static const auth_need_t needs[] = {AUTH_OPTIONAL, AUTH_USER, AUTH_ADMIN};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        for (size_t j = 0; j < sizeof(needs) / sizeof(needs[0]); j++) {
            auth_verdict_t v;
            auth_check(auth, needs[j], headers[i], NOW, &v);
            ck_assert_int_eq(v.outcome, AUTH_UNAUTHENTICATED);
            ck_assert(!v.token_missing && !v.identified && !v.counted);
        }
    /* Expired: well past its lifetime and the leeway. */
    char *h = bearer("customer");
    auth_verdict_t v;
    auth_check(auth, AUTH_USER, h, NOW + 3600, &v);
    ck_assert_int_eq(v.outcome, AUTH_UNAUTHENTICATED);
    ck_assert(!v.token_missing && !v.identified);
    free(h);
}
END_TEST

START_TEST(test_auth_a_good_token_with_an_unreachable_store_is_unavailable)
{
    char *h = bearer("admin");
    auth_verdict_t v;
    auth_check(auth, AUTH_ADMIN, h, NOW, &v);
    ck_assert_int_eq(v.outcome, AUTH_UNAVAILABLE);
    ck_assert_int_eq(v.err.code, ERR_UNAVAILABLE);
    ck_assert(!v.identified && !v.counted);
    ck_assert_str_eq(v.claims.sub, "user-1");
    free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = check_case(s, "auth", 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_auth_routes_that_need_nothing_pass_anonymously);
    tcase_add_test(tc, test_auth_without_a_bearer_token_is_unauthenticated_and_says_so);
    tcase_add_test(tc, test_auth_a_token_that_does_not_verify_is_unauthenticated_when_sent);
    tcase_add_test(tc, test_auth_a_good_token_with_an_unreachable_store_is_unavailable);
    return check_run(s, CK_FORK_GETENV);
}
