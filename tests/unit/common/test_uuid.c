/*
 * uuid: canonical UUIDv7 text, version and variant bits, the embedded timestamp,
 * uniqueness and creation order (within one thread and across threads).
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/uuid.h"

#define TEST_TIMEOUT_S 30
#define MANY           100000
#define THREADS        4

/* The 48-bit Unix-millisecond prefix of a UUIDv7. */
static int64_t uuid_ms(const char *u)
{
    char hex[13];
    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    return strtoll(hex, NULL, 16);
}

START_TEST(test_new_is_canonical_lower_case_v7)
{
    char u[UUID_STR_LEN];
    uuid_new(u);
    ck_assert_uint_eq(strlen(u), 36);
    ck_assert(uuid_valid(u));
    for (int i = 0; i < 36; i++)
        ck_assert_msg(u[i] == '-' || (u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f'),
                      "not lower-case hex: %s", u);
    ck_assert_int_eq(u[14], '7');
    ck_assert_ptr_nonnull(strchr("89ab", u[19]));
}
END_TEST

START_TEST(test_timestamp_is_the_creation_millisecond)
{
    int64_t before = clock_now_us() / 1000;
    char u[UUID_STR_LEN];
    uuid_new(u);
    int64_t after = clock_now_us() / 1000;
    ck_assert_int_ge(uuid_ms(u), before);
    /* The counter may push the stamp a millisecond ahead when it runs out. */
    ck_assert_int_le(uuid_ms(u), after + 1);
}
END_TEST

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

START_TEST(test_ids_are_unique_and_increase_in_creation_order)
{
    char *ids = malloc((size_t)MANY * UUID_STR_LEN);
    char prev[UUID_STR_LEN] = "";
    for (int i = 0; i < MANY; i++) {
        char *u = ids + (size_t)i * UUID_STR_LEN;
        uuid_new(u);
        ck_assert_int_eq(u[14], '7');
        ck_assert_ptr_nonnull(strchr("89ab", u[19]));
        ck_assert_msg(strcmp(u, prev) > 0, "%s after %s", u, prev);
        memcpy(prev, u, UUID_STR_LEN);
    }
    free(ids);
}
END_TEST

static void *make_ids(void *arg)
{
    char *ids = arg;
    for (int i = 0; i < MANY / THREADS; i++)
        uuid_new(ids + (size_t)i * UUID_STR_LEN);
    return NULL;
}

START_TEST(test_ids_from_concurrent_threads_never_collide)
{
    char *ids = malloc((size_t)MANY * UUID_STR_LEN);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, make_ids, ids + (size_t)i * (MANY / THREADS) * UUID_STR_LEN);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char **sorted = malloc(MANY * sizeof(*sorted));
    for (int i = 0; i < MANY; i++)
        sorted[i] = ids + (size_t)i * UUID_STR_LEN;
    qsort(sorted, MANY, sizeof(*sorted), cmp_str);
    for (int i = 1; i < MANY; i++)
        ck_assert_msg(strcmp(sorted[i - 1], sorted[i]) != 0, "duplicate %s", sorted[i]);
    free(sorted);
    free(ids);
}
END_TEST

START_TEST(test_later_ids_sort_after_earlier_ones)
{
    char first[UUID_STR_LEN], second[UUID_STR_LEN];
    uuid_new(first);
    clock_sleep_ms(3);
    uuid_new(second);
    ck_assert_int_lt(strcmp(first, second), 0);
    ck_assert_int_gt(uuid_ms(second), uuid_ms(first));
}
END_TEST

START_TEST(test_valid_checks_the_canonical_shape)
{
    ck_assert(uuid_valid("0b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6f"));
    ck_assert(uuid_valid("0B6F5C1E-8D2A-4C3B-9E7F-1A2B3C4D5E6F"));
    ck_assert(!uuid_valid(NULL));
    ck_assert(!uuid_valid(""));
    ck_assert(!uuid_valid("0b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6"));   /* short */
    ck_assert(!uuid_valid("0b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6f0")); /* long */
    ck_assert(!uuid_valid("0b6f5c1e8d2a-4c3b-9e7f-1a2b3c4d5e6f0"));  /* hyphen moved */
    ck_assert(!uuid_valid("0b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6g"));  /* not hex */
    ck_assert(!uuid_valid("{b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6f}"));
}
END_TEST

static Suite *uuid_suite(void)
{
    Suite *s = suite_create("uuid");
    tcase_add_test(check_case(s, "format", TEST_TIMEOUT_S), test_new_is_canonical_lower_case_v7);
    tcase_add_test(check_case(s, "timestamp", TEST_TIMEOUT_S),
                   test_timestamp_is_the_creation_millisecond);
    tcase_add_test(check_case(s, "unique_ordered", TEST_TIMEOUT_S),
                   test_ids_are_unique_and_increase_in_creation_order);
    tcase_add_test(check_case(s, "threads", TEST_TIMEOUT_S),
                   test_ids_from_concurrent_threads_never_collide);
    tcase_add_test(check_case(s, "time_order", TEST_TIMEOUT_S),
                   test_later_ids_sort_after_earlier_ones);
    tcase_add_test(check_case(s, "valid", TEST_TIMEOUT_S), test_valid_checks_the_canonical_shape);
    return s;
}

int main(void)
{
    return check_run(uuid_suite(), CK_FORK_GETENV);
}
