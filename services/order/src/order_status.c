/*
 * order_status: the stored order statuses and cancel reasons (order.h's ORDER_*
 * texts, migrations/order) as the shop.common.v1 enum numbers the API and the events
 * carry.
 */
#include <stddef.h>
#include <string.h>

#include "order.h"
#include "shop/common/v1/common.pb-c.h"

int order_status_value(const char *status)
{
    if (strcmp(status, ORDER_PENDING) == 0)
        return SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_PENDING;
    if (strcmp(status, ORDER_CONFIRMED) == 0)
        return SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED;
    if (strcmp(status, ORDER_CANCELLED) == 0)
        return SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED;
    return SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_UNSPECIFIED;
}

int order_reason_value(const char *reason)
{
    static const struct {
        const char *name;
        int value;
    } reasons[] = {
        {ORDER_REASON_OUT_OF_STOCK, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_OUT_OF_STOCK},
        {ORDER_REASON_PAYMENT_FAILED,
         SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_PAYMENT_FAILED},
        {ORDER_REASON_TIMEOUT, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT},
        {ORDER_REASON_USER_REQUESTED,
         SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(reason, reasons[i].name) == 0)
            return reasons[i].value;
    return SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_UNSPECIFIED;
}
