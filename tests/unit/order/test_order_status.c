/*
 * order_status: every status and cancel reason the API and the events can carry
 * (the shop.common.v1 enums, read from their protobuf-c descriptors) has a stored
 * text that maps back to it, and text the database never holds maps to UNSPECIFIED.
 * A value added to common.proto without a stored text fails here.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "order.h"
#include "shop/common/v1/common.pb-c.h"

#define TEST_TIMEOUT_S 10

/* Each value of `e` but UNSPECIFIED, its name less `prefix` (ORDER_STATUS_PENDING →
 * PENDING), goes through `map` and comes back as itself. Returns how many. */
static unsigned check_enum(const ProtobufCEnumDescriptor *e, const char *prefix,
                           int (*map)(const char *))
{
    unsigned n = 0;
    size_t plen = strlen(prefix);
    for (unsigned i = 0; i < e->n_values; i++) {
        const ProtobufCEnumValue *v = &e->values[i];
        if (v->value == 0)
            continue;
        ck_assert_msg(strncmp(v->name, prefix, plen) == 0, "%s", v->name);
        ck_assert_msg(map(v->name + plen) == v->value, "%s has no stored text", v->name);
        n++;
    }
    return n;
}

START_TEST(test_every_status_round_trips)
{
    ck_assert_uint_eq(check_enum(&shop__common__v1__order_status__descriptor, "ORDER_STATUS_",
                                 order_status_value),
                      3);
    ck_assert_int_eq(order_status_value(ORDER_PENDING),
                     SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_PENDING);
    ck_assert_int_eq(order_status_value(ORDER_CANCELLED),
                     SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED);
}
END_TEST

START_TEST(test_every_cancel_reason_round_trips)
{
    ck_assert_uint_ge(check_enum(&shop__common__v1__cancel_reason__descriptor, "CANCEL_REASON_",
                                 order_reason_value),
                      4);
    ck_assert_int_eq(order_reason_value(ORDER_REASON_TIMEOUT),
                     SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT);
}
END_TEST

START_TEST(test_unknown_text_is_unspecified)
{
    static const char *const odd[] = {
        "", "pending", "PENDING ", "UNSPECIFIED", "ORDER_STATUS_PENDING", "TIMEOUTS", "timeout"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        ck_assert_int_eq(order_status_value(odd[i]),
                         SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_UNSPECIFIED);
        ck_assert_int_eq(order_reason_value(odd[i]),
                         SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_UNSPECIFIED);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("order_status");
    TCase *tc = check_case(s, "maps", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_every_status_round_trips);
    tcase_add_test(tc, test_every_cancel_reason_round_trips);
    tcase_add_test(tc, test_unknown_text_is_unspecified);
    return check_run(s, CK_FORK_GETENV);
}
