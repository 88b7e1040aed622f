/*
 * saga_check: the field rules of the saga events (the "Field rules" of
 * proto/shop/events/v1/events.proto), which every participant applies to every event
 * it consumes before the event has any effect.
 *
 * The rules are the event contract, not one service's business: order-svc, product-svc
 * and user-svc consume the same messages (OrderCancelled reaches two of them), so they
 * are written once here. What a participant does with an event that breaks them (a
 * business rejection such as StockRejected, or the dead-letter topic) and the checks
 * against its own state (a payment's amount against the order's total) stay in the
 * participant.
 */
#ifndef COMMON_SAGA_CHECK_H
#define COMMON_SAGA_CHECK_H

#include <protobuf-c/protobuf-c.h>

#include "common/err.h"

/* The fleet's one currency (docs/architecture.md §3). */
#define SAGA_CURRENCY "USD"

/* An order's bounds (docs/architecture.md §3: CreateOrder takes 1..100 lines of 1..1000 units). A
 * stock line sums an order's lines of one product, so it moves at most
 * SAGA_LINES_MAX * SAGA_QUANTITY_MAX units. */
#define SAGA_LINES_MAX    100
#define SAGA_QUANTITY_MAX 1000

/* saga_check: checks every field of `msg`, one of the shop.events.v1 saga events, and
 * returns 0, or ERR_INVALID with err's message naming the event and the first field
 * that breaks a rule, e.g. "OrderCreated: lines[2].quantity is 0, not 1..1000". A
 * message of any other type is ERR_INVALID as well. Numbers are quoted in the message,
 * strings never (a hostile event cannot put its text in the log). err must not be
 * NULL. Reads msg only; thread-safe. */
int saga_check(const ProtobufCMessage *msg, err_t *err);

/* saga_event_type: the descriptor of the saga event whose full name (a ce_type, e.g.
 * "shop.events.v1.OrderCreated") is `name`, or NULL if no saga event has it. Pure. */
const ProtobufCMessageDescriptor *saga_event_type(const char *name);

#endif
