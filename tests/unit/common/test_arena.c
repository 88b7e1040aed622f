/*
 * arena: alignment, growth past the first block, dedicated blocks for big requests,
 * cleanups in reverse order, copies, and protobuf-c unpacking through the arena.
 */
#include <check.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/arena.h"
#include "shop/events/v1/events.pb-c.h"

#define TEST_TIMEOUT_S 10
#define ALIGNMENT      _Alignof(max_align_t)

static int is_aligned(const void *p)
{
    return (uintptr_t)p % ALIGNMENT == 0;
}

START_TEST(test_alloc_returns_max_aligned_non_overlapping_memory)
{
    arena_t *a = arena_new(0);
    unsigned char *blocks[200];
    for (size_t i = 0; i < 200; i++) {
        blocks[i] = arena_alloc(a, i + 1);
        ck_assert_msg(is_aligned(blocks[i]), "allocation %zu misaligned", i);
        memset(blocks[i], (int)i, i + 1);
    }
    for (size_t i = 0; i < 200; i++) {
        for (size_t j = 0; j <= i; j++)
            ck_assert_uint_eq(blocks[i][j], (unsigned char)i);
    }
    arena_free(a);
}
END_TEST

START_TEST(test_memory_stays_valid_across_many_blocks)
{
    arena_t *a = arena_new(64);
    uint32_t *vals[5000];
    for (uint32_t i = 0; i < 5000; i++) {
        vals[i] = arena_alloc(a, 100);
        vals[i][0] = i;
        vals[i][24] = ~i;
    }
    for (uint32_t i = 0; i < 5000; i++) {
        ck_assert_uint_eq(vals[i][0], i);
        ck_assert_uint_eq(vals[i][24], ~i);
    }
    arena_free(a);
}
END_TEST

START_TEST(test_big_allocation_does_not_waste_the_current_block)
{
    arena_t *a = arena_new(0);
    unsigned char *before = arena_alloc(a, 16);
    unsigned char *big = arena_alloc(a, 1 << 20);
    unsigned char *after = arena_alloc(a, 16);
    ck_assert(is_aligned(big));
    memset(big, 0xAB, 1 << 20);
    ck_assert_uint_eq(big[(1 << 20) - 1], 0xAB);
    /* The small request after the big one continues right behind the first. */
    ck_assert_ptr_eq(after, before + 16);
    arena_free(a);
}
END_TEST

START_TEST(test_bytes_used_counts_what_was_requested)
{
    arena_t *a = arena_new(0);
    ck_assert_uint_eq(arena_bytes_used(a), 0);
    arena_alloc(a, 10);
    arena_alloc(a, 100000);
    ck_assert_uint_eq(arena_bytes_used(a), 100010);
    arena_free(a);
}
END_TEST

static int cleanup_order[4];
static int cleanup_count;

static void record_cleanup(void *p)
{
    cleanup_order[cleanup_count++] = *(int *)p;
}

START_TEST(test_cleanups_run_in_reverse_order_at_free)
{
    static int ids[] = {1, 2, 3};
    arena_t *a = arena_new(0);
    for (int i = 0; i < 3; i++)
        arena_cleanup_add(a, record_cleanup, &ids[i]);
    ck_assert_int_eq(cleanup_count, 0);
    arena_free(a);
    ck_assert_int_eq(cleanup_count, 3);
    ck_assert_int_eq(cleanup_order[0], 3);
    ck_assert_int_eq(cleanup_order[1], 2);
    ck_assert_int_eq(cleanup_order[2], 1);
}
END_TEST

START_TEST(test_cleanup_releases_foreign_memory)
{
    /* Under LeakSanitizer a cleanup that did not run would fail this test. */
    arena_t *a = arena_new(0);
    arena_cleanup_add(a, free, malloc(1000));
    arena_free(a);
}
END_TEST

START_TEST(test_calloc_zeroes)
{
    arena_t *a = arena_new(0);
    /* Dirty the block first so zeroes cannot come from a fresh malloc by luck. */
    memset(arena_alloc(a, 512), 0xFF, 512);
    arena_free(a);
    a = arena_new(0);
    unsigned char *p = arena_calloc(a, 100, 7);
    for (size_t i = 0; i < 700; i++)
        ck_assert_uint_eq(p[i], 0);
    arena_free(a);
}
END_TEST

START_TEST(test_calloc_overflow_aborts)
{
    arena_t *a = arena_new(0);
    arena_calloc(a, SIZE_MAX / 2, 3);
}
END_TEST

START_TEST(test_string_copies_are_nul_terminated)
{
    arena_t *a = arena_new(0);
    const char *src = "order confirmed";
    char *dup = arena_strdup(a, src);
    ck_assert_str_eq(dup, src);
    ck_assert_ptr_ne(dup, src);
    ck_assert_str_eq(arena_strndup(a, src, 5), "order");
    ck_assert_str_eq(arena_strndup(a, "ab", 10), "ab");
    char *mem = arena_memdup(a, "xyz\0w", 5);
    ck_assert_mem_eq(mem, "xyz\0w", 5);
    ck_assert_int_eq(mem[5], '\0');
    ck_assert_str_eq(arena_sprintf(a, "%s-%d-%05.1f", "id", 42, 3.14159), "id-42-003.1");
    char big[10000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_str_eq(arena_sprintf(a, "%s", big), big);
    arena_free(a);
}
END_TEST

START_TEST(test_free_accepts_null)
{
    arena_free(NULL);
}
END_TEST

START_TEST(test_protobuf_allocator_unpacks_order_created)
{
    Shop__Events__V1__OrderLine line = SHOP__EVENTS__V1__ORDER_LINE__INIT;
    line.product_id = "a1b2c3d4-0001-4000-8000-00000000000a";
    line.quantity = 3;
    line.unit_price_cents = 1999;
    Shop__Events__V1__OrderLine *lines[] = {&line, &line};
    Shop__Events__V1__OrderCreated msg = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    msg.order_id = "0b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6f";
    msg.user_id = "5d9e2f4a-1b3c-4d5e-8f70-9a8b7c6d5e4f";
    msg.n_lines = 2;
    msg.lines = lines;
    msg.total_cents = 11994;
    msg.currency = "USD";
    msg.created_at = "2024-05-01T12:34:56.789Z";
    uint8_t buf[512];
    size_t len = shop__events__v1__order_created__pack(&msg, buf);
    ck_assert_uint_lt(len, sizeof(buf));

    arena_t *a = arena_new(0);
    Shop__Events__V1__OrderCreated *copy =
        shop__events__v1__order_created__unpack(arena_protobuf_allocator(a), len, buf);
    ck_assert_ptr_nonnull(copy);
    /* Everything came from the arena; nothing is freed but the arena itself, and
     * LeakSanitizer would report any malloc the unpack made behind its back. */
    ck_assert_uint_gt(arena_bytes_used(a), sizeof(*copy));
    ck_assert_str_eq(copy->order_id, msg.order_id);
    ck_assert_str_eq(copy->user_id, msg.user_id);
    ck_assert_uint_eq(copy->n_lines, 2);
    ck_assert_str_eq(copy->lines[1]->product_id, line.product_id);
    ck_assert_int_eq(copy->lines[1]->quantity, 3);
    ck_assert_int_eq(copy->lines[1]->unit_price_cents, 1999);
    ck_assert_int_eq(copy->total_cents, 11994);
    ck_assert_str_eq(copy->currency, "USD");
    ck_assert_str_eq(copy->created_at, msg.created_at);
    /* free_unpacked goes through the allocator's no-op free: harmless. */
    shop__events__v1__order_created__free_unpacked(copy, arena_protobuf_allocator(a));
    arena_free(a);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__)
START_TEST(test_overflow_past_an_arena_object_is_reported_by_asan)
{
    arena_t *a = arena_new(0);
    char *p = arena_alloc(a, 20);
    arena_alloc(a, 20);
    /* Inside the padding behind p: poisoned, so ASan stops the process (exit 1). */
    volatile char *q = p;
    q[24] = 'x';
    arena_free(a);
}
END_TEST
#endif

static Suite *arena_suite(void)
{
    Suite *s = suite_create("arena");
    tcase_add_test(check_case(s, "alignment", TEST_TIMEOUT_S),
                   test_alloc_returns_max_aligned_non_overlapping_memory);
    tcase_add_test(check_case(s, "growth", TEST_TIMEOUT_S),
                   test_memory_stays_valid_across_many_blocks);
    tcase_add_test(check_case(s, "big", TEST_TIMEOUT_S),
                   test_big_allocation_does_not_waste_the_current_block);
    tcase_add_test(check_case(s, "bytes_used", TEST_TIMEOUT_S),
                   test_bytes_used_counts_what_was_requested);
    tcase_add_test(check_case(s, "cleanup_order", TEST_TIMEOUT_S),
                   test_cleanups_run_in_reverse_order_at_free);
    tcase_add_test(check_case(s, "cleanup_free", TEST_TIMEOUT_S),
                   test_cleanup_releases_foreign_memory);
    tcase_add_test(check_case(s, "calloc", TEST_TIMEOUT_S), test_calloc_zeroes);
    tcase_add_test_raise_signal(check_case(s, "calloc_overflow", TEST_TIMEOUT_S),
                                test_calloc_overflow_aborts, SIGABRT);
    tcase_add_test(check_case(s, "strings", TEST_TIMEOUT_S), test_string_copies_are_nul_terminated);
    tcase_add_test(check_case(s, "free_null", TEST_TIMEOUT_S), test_free_accepts_null);
    tcase_add_test(check_case(s, "protobuf", TEST_TIMEOUT_S),
                   test_protobuf_allocator_unpacks_order_created);
#if defined(__SANITIZE_ADDRESS__)
    tcase_add_exit_test(check_case(s, "asan_poison", TEST_TIMEOUT_S),
                        test_overflow_past_an_arena_object_is_reported_by_asan, 1);
#endif
    return s;
}

int main(void)
{
    return check_run(arena_suite(), CK_FORK_GETENV);
}
