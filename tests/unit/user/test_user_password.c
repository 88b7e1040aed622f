/*
 * user_password: argon2id hashing with the minimum parameters OWASP gives — the PHC
 * string format, a fresh salt per hash, a match, a mismatch with the one message,
 * an unknown account (NULL hash) that never matches, unreadable hashes refused, and
 * parameters below the minimums refused.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "user_password.h"

#define TEST_TIMEOUT_S 60
#define WAIT_MS        10000

static user_password_t *hasher(void)
{
    err_t err = ERR_INIT;
    user_password_opts_t o = {.memory_kib = USER_PASSWORD_MIN_MEMORY_KIB,
                              .iterations = USER_PASSWORD_MIN_ITERATIONS,
                              .concurrency = 2};
    user_password_t *pw = user_password_new(&o, &err);
    ck_assert_msg(pw != NULL, "%s", err.msg);
    return pw;
}

START_TEST(test_hash_is_phc_argon2id_with_a_fresh_salt)
{
    user_password_t *pw = hasher();
    err_t err = ERR_INIT;
    char a[USER_PASSWORD_HASH_MAX], b[USER_PASSWORD_HASH_MAX];
    ck_assert_int_eq(user_password_hash(pw, "correct horse", WAIT_MS, a, &err), 0);
    ck_assert_int_eq(user_password_hash(pw, "correct horse", WAIT_MS, b, &err), 0);
    ck_assert_msg(strncmp(a, "$argon2id$v=19$m=19456,t=2,p=1$", 31) == 0, "%s", a);
    ck_assert_str_ne(a, b); /* the salt differs */
    ck_assert_ptr_null(strstr(a, "correct"));
    user_password_free(pw);
}
END_TEST

START_TEST(test_verify_matches_only_the_password)
{
    user_password_t *pw = hasher();
    err_t err = ERR_INIT;
    char h[USER_PASSWORD_HASH_MAX];
    ck_assert_int_eq(user_password_hash(pw, "pässwörd 1", WAIT_MS, h, &err), 0);
    ck_assert_int_eq(user_password_verify(pw, h, "pässwörd 1", WAIT_MS, &err), 0);
    static const char *const wrong[] = {"pässwörd 2", "", "pässwörd 1 ", "PÄSSWÖRD 1"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        err = (err_t)ERR_INIT;
        ck_assert_int_eq(user_password_verify(pw, h, wrong[i], WAIT_MS, &err), ERR_UNAUTHENTICATED);
        ck_assert_str_eq(err.msg, USER_PASSWORD_MISMATCH);
    }
    user_password_free(pw);
}
END_TEST

START_TEST(test_unknown_account_never_matches)
{
    user_password_t *pw = hasher();
    err_t err = ERR_INIT;
    ck_assert_int_eq(user_password_verify(pw, NULL, "", WAIT_MS, &err), ERR_UNAUTHENTICATED);
    ck_assert_str_eq(err.msg, USER_PASSWORD_MISMATCH);
    err = (err_t)ERR_INIT;
    ck_assert_int_eq(user_password_verify(pw, NULL, "anything", WAIT_MS, &err),
                     ERR_UNAUTHENTICATED);
    user_password_free(pw);
}
END_TEST

START_TEST(test_unreadable_hash_is_an_internal_error)
{
    user_password_t *pw = hasher();
    static const char *const bad[] = {"", "plain text", "$argon2id$v=19$m=19456,t=2,p=1$",
                                      "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err_t err = ERR_INIT;
        ck_assert_int_eq(user_password_verify(pw, bad[i], "x", WAIT_MS, &err), ERR_INTERNAL);
        ck_assert_msg(strstr(err.msg, "unusable") != NULL, "%s: %s", bad[i], err.msg);
    }
    user_password_free(pw);
}
END_TEST

START_TEST(test_parameters_below_the_minimums_are_refused)
{
    const user_password_opts_t weak[] = {
        {.memory_kib = USER_PASSWORD_MIN_MEMORY_KIB - 1, .iterations = 2, .concurrency = 1},
        {.memory_kib = USER_PASSWORD_MIN_MEMORY_KIB, .iterations = 1, .concurrency = 1},
        {.memory_kib = USER_PASSWORD_MIN_MEMORY_KIB, .iterations = 2, .concurrency = 0},
    };
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
        err_t err = ERR_INIT;
        ck_assert_ptr_null(user_password_new(&weak[i], &err));
        ck_assert_int_eq(err.code, ERR_INVALID);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("user_password");
    TCase *tc = check_case(s, "argon2id", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_hash_is_phc_argon2id_with_a_fresh_salt);
    tcase_add_test(tc, test_verify_matches_only_the_password);
    tcase_add_test(tc, test_unknown_account_never_matches);
    tcase_add_test(tc, test_unreadable_hash_is_an_internal_error);
    tcase_add_test(tc, test_parameters_below_the_minimums_are_refused);
    return check_run(s, CK_FORK_GETENV);
}
