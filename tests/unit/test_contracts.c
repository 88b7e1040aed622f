/*
 * Contract tests for proto/: the saga events survive the wire unchanged, the service
 * descriptors expose exactly the methods the RPC layer will register, and the schema
 * follows the conventions of docs/architecture.md §2 (UNSPECIFIED enums, snake_case names that the
 * gateway reuses as REST JSON names, field masks instead of proto3 optional).
 */
#include <check.h>
#include <protobuf-c/protobuf-c.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "shop/common/v1/common.pb-c.h"
#include "shop/events/v1/events.pb-c.h"
#include "shop/order/v1/order_service.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"

#define TEST_TIMEOUT_S 10
#define ARRAY_LEN(a)   (sizeof(a) / sizeof((a)[0]))

/* Distinct non-default values, so a field swapped with another one is caught. */
#define ORDER_ID    "0b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6f"
#define USER_ID     "5d9e2f4a-1b3c-4d5e-8f70-9a8b7c6d5e4f"
#define PRODUCT_A   "a1b2c3d4-0001-4000-8000-00000000000a"
#define PRODUCT_B   "a1b2c3d4-0002-4000-8000-00000000000b"
#define LEDGER_ID   "c0ffee00-1234-4567-89ab-cdef01234567"
#define CURRENCY    "USD"
#define CREATED_AT  "2024-05-01T12:34:56.789Z"
#define TOTAL_CENTS INT64_C(12345678901)

/* ---- helpers ----------------------------------------------------------------------- */

/* Packs msg into a malloc'd buffer the caller frees; *len receives its size. */
static uint8_t *pack_message(const ProtobufCMessage *msg, size_t *len)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(size > 0 ? size : 1);
    ck_assert_ptr_nonnull(buf);
    *len = protobuf_c_message_pack(msg, buf);
    ck_assert_uint_eq(*len, size);
    ck_assert_uint_gt(*len, 0);
    return buf;
}

/* The unpacked copy packs to the very same bytes: nothing was lost or added. */
static void assert_repacks_identically(const ProtobufCMessage *copy, const uint8_t *bytes,
                                       size_t len)
{
    size_t copy_len = 0;
    uint8_t *copy_bytes = pack_message(copy, &copy_len);
    ck_assert_uint_eq(copy_len, len);
    ck_assert_mem_eq(copy_bytes, bytes, len);
    free(copy_bytes);
}

static bool field_is_set(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const char *p = (const char *)msg + f->offset;

    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n;
        memcpy(&n, (const char *)msg + f->quantifier_offset, sizeof n);
        return n > 0;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return v != 0;
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return v != 0;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return v != 0;
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        return v != 0;
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float v;
        memcpy(&v, p, sizeof v);
        return v < 0.0f || v > 0.0f;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v;
        memcpy(&v, p, sizeof v);
        return v < 0.0 || v > 0.0;
    }
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean v;
        memcpy(&v, p, sizeof v);
        return v != 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *v;
        memcpy(&v, p, sizeof v);
        return v != NULL && v[0] != '\0';
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData v;
        memcpy(&v, p, sizeof v);
        return v.len > 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *v;
        memcpy(&v, p, sizeof v);
        return v != NULL;
    }
    }
    return false;
}

/*
 * Every field of msg, and of every sub-message, holds a non-default value. Run on each
 * fixture, it makes the round-trip tests fail when a field is added to an event but not
 * to its test: a default value is not on the wire, so it would round-trip unchecked.
 */
static void assert_every_field_set(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;

    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *p = (const char *)msg + f->offset;

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which;
            memcpy(&which, (const char *)msg + f->quantifier_offset, sizeof which);
            if (which != f->id) {
                continue;
            }
        }
        ck_assert_msg(field_is_set(msg, f), "%s.%s holds its default value", d->name, f->name);
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            ProtobufCMessage **items;
            memcpy(&n, (const char *)msg + f->quantifier_offset, sizeof n);
            memcpy(&items, p, sizeof items);
            for (size_t j = 0; j < n; j++) {
                assert_every_field_set(items[j]);
            }
        } else {
            const ProtobufCMessage *sub;
            memcpy(&sub, p, sizeof sub);
            assert_every_field_set(sub);
        }
    }
}

/* Fixtures: two priced lines and the same two as stock lines. */
static Shop__Events__V1__OrderLine fixture_line_a = {
    PROTOBUF_C_MESSAGE_INIT(&shop__events__v1__order_line__descriptor), PRODUCT_A, 3, 1999};
static Shop__Events__V1__OrderLine fixture_line_b = {
    PROTOBUF_C_MESSAGE_INIT(&shop__events__v1__order_line__descriptor), PRODUCT_B, 1000,
    INT64_C(9999999999)};
static Shop__Events__V1__OrderLine *fixture_lines[] = {&fixture_line_a, &fixture_line_b};

static Shop__Events__V1__StockLine fixture_stock_a = {
    PROTOBUF_C_MESSAGE_INIT(&shop__events__v1__stock_line__descriptor), PRODUCT_A, 3};
static Shop__Events__V1__StockLine fixture_stock_b = {
    PROTOBUF_C_MESSAGE_INIT(&shop__events__v1__stock_line__descriptor), PRODUCT_B, 1000};
static Shop__Events__V1__StockLine *fixture_stock_lines[] = {&fixture_stock_a, &fixture_stock_b};

static void assert_order_lines_match_fixture(size_t n, Shop__Events__V1__OrderLine *const *lines)
{
    ck_assert_uint_eq(n, ARRAY_LEN(fixture_lines));
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(lines[i]->product_id, fixture_lines[i]->product_id);
        ck_assert_int_eq(lines[i]->quantity, fixture_lines[i]->quantity);
        ck_assert_int_eq(lines[i]->unit_price_cents, fixture_lines[i]->unit_price_cents);
    }
}

static void assert_stock_lines_match_fixture(size_t n, Shop__Events__V1__StockLine *const *lines)
{
    ck_assert_uint_eq(n, ARRAY_LEN(fixture_stock_lines));
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(lines[i]->product_id, fixture_stock_lines[i]->product_id);
        ck_assert_int_eq(lines[i]->quantity, fixture_stock_lines[i]->quantity);
    }
}

/* ---- saga events round-trip -------------------------------------------------------- */

START_TEST(test_order_created_round_trips)
{
    Shop__Events__V1__OrderCreated in = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    in.order_id = ORDER_ID;
    in.user_id = USER_ID;
    in.n_lines = ARRAY_LEN(fixture_lines);
    in.lines = fixture_lines;
    in.total_cents = TOTAL_CENTS;
    in.currency = CURRENCY;
    in.created_at = CREATED_AT;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__OrderCreated *out = shop__events__v1__order_created__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_str_eq(out->user_id, USER_ID);
    assert_order_lines_match_fixture(out->n_lines, out->lines);
    ck_assert_int_eq(out->total_cents, TOTAL_CENTS);
    ck_assert_str_eq(out->currency, CURRENCY);
    ck_assert_str_eq(out->created_at, CREATED_AT);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__order_created__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_stock_reserved_round_trips)
{
    Shop__Events__V1__StockReserved in = SHOP__EVENTS__V1__STOCK_RESERVED__INIT;
    in.order_id = ORDER_ID;
    in.user_id = USER_ID;
    in.total_cents = TOTAL_CENTS;
    in.currency = CURRENCY;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__StockReserved *out =
        shop__events__v1__stock_reserved__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_str_eq(out->user_id, USER_ID);
    ck_assert_int_eq(out->total_cents, TOTAL_CENTS);
    ck_assert_str_eq(out->currency, CURRENCY);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__stock_reserved__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_stock_rejected_round_trips)
{
    Shop__Events__V1__StockRejected in = SHOP__EVENTS__V1__STOCK_REJECTED__INIT;
    in.order_id = ORDER_ID;
    in.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK;
    in.product_id = PRODUCT_B;
    in.requested = 1000;
    in.available = 7;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__StockRejected *out =
        shop__events__v1__stock_rejected__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_int_eq(out->reason,
                     SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK);
    ck_assert_str_eq(out->product_id, PRODUCT_B);
    ck_assert_int_eq(out->requested, 1000);
    ck_assert_int_eq(out->available, 7);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__stock_rejected__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_payment_completed_round_trips)
{
    Shop__Events__V1__PaymentCompleted in = SHOP__EVENTS__V1__PAYMENT_COMPLETED__INIT;
    in.order_id = ORDER_ID;
    in.user_id = USER_ID;
    in.amount_cents = TOTAL_CENTS;
    in.currency = CURRENCY;
    in.ledger_entry_id = LEDGER_ID;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__PaymentCompleted *out =
        shop__events__v1__payment_completed__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_str_eq(out->user_id, USER_ID);
    ck_assert_int_eq(out->amount_cents, TOTAL_CENTS);
    ck_assert_str_eq(out->currency, CURRENCY);
    ck_assert_str_eq(out->ledger_entry_id, LEDGER_ID);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__payment_completed__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_payment_failed_round_trips)
{
    Shop__Events__V1__PaymentFailed in = SHOP__EVENTS__V1__PAYMENT_FAILED__INIT;
    in.order_id = ORDER_ID;
    in.user_id = USER_ID;
    in.reason = SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS;
    in.amount_cents = TOTAL_CENTS;
    in.currency = CURRENCY;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__PaymentFailed *out =
        shop__events__v1__payment_failed__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_str_eq(out->user_id, USER_ID);
    ck_assert_int_eq(
        out->reason,
        SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS);
    ck_assert_int_eq(out->amount_cents, TOTAL_CENTS);
    ck_assert_str_eq(out->currency, CURRENCY);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__payment_failed__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_order_confirmed_round_trips)
{
    Shop__Events__V1__OrderConfirmed in = SHOP__EVENTS__V1__ORDER_CONFIRMED__INIT;
    in.order_id = ORDER_ID;
    in.user_id = USER_ID;
    in.n_lines = ARRAY_LEN(fixture_lines);
    in.lines = fixture_lines;
    in.total_cents = TOTAL_CENTS;
    in.currency = CURRENCY;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__OrderConfirmed *out =
        shop__events__v1__order_confirmed__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_str_eq(out->user_id, USER_ID);
    assert_order_lines_match_fixture(out->n_lines, out->lines);
    ck_assert_int_eq(out->total_cents, TOTAL_CENTS);
    ck_assert_str_eq(out->currency, CURRENCY);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__order_confirmed__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_order_cancelled_round_trips)
{
    Shop__Events__V1__OrderCancelled in = SHOP__EVENTS__V1__ORDER_CANCELLED__INIT;
    in.order_id = ORDER_ID;
    in.user_id = USER_ID;
    in.reason = SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED;
    in.n_lines = ARRAY_LEN(fixture_lines);
    in.lines = fixture_lines;
    in.total_cents = TOTAL_CENTS;
    in.currency = CURRENCY;
    in.previous_status = SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__OrderCancelled *out =
        shop__events__v1__order_cancelled__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_str_eq(out->user_id, USER_ID);
    ck_assert_int_eq(out->reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED);
    assert_order_lines_match_fixture(out->n_lines, out->lines);
    ck_assert_int_eq(out->total_cents, TOTAL_CENTS);
    ck_assert_str_eq(out->currency, CURRENCY);
    ck_assert_int_eq(out->previous_status, SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__order_cancelled__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_stock_committed_round_trips)
{
    Shop__Events__V1__StockCommitted in = SHOP__EVENTS__V1__STOCK_COMMITTED__INIT;
    in.order_id = ORDER_ID;
    in.n_lines = ARRAY_LEN(fixture_stock_lines);
    in.lines = fixture_stock_lines;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__StockCommitted *out =
        shop__events__v1__stock_committed__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    assert_stock_lines_match_fixture(out->n_lines, out->lines);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__stock_committed__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_stock_released_round_trips)
{
    Shop__Events__V1__StockReleased in = SHOP__EVENTS__V1__STOCK_RELEASED__INIT;
    in.order_id = ORDER_ID;
    in.source = SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_SOLD;
    in.n_lines = ARRAY_LEN(fixture_stock_lines);
    in.lines = fixture_stock_lines;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__StockReleased *out =
        shop__events__v1__stock_released__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_int_eq(out->source, SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_SOLD);
    assert_stock_lines_match_fixture(out->n_lines, out->lines);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__stock_released__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

START_TEST(test_payment_refunded_round_trips)
{
    Shop__Events__V1__PaymentRefunded in = SHOP__EVENTS__V1__PAYMENT_REFUNDED__INIT;
    in.order_id = ORDER_ID;
    in.user_id = USER_ID;
    in.amount_cents = TOTAL_CENTS;
    in.currency = CURRENCY;
    in.ledger_entry_id = LEDGER_ID;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    Shop__Events__V1__PaymentRefunded *out =
        shop__events__v1__payment_refunded__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out->order_id, ORDER_ID);
    ck_assert_str_eq(out->user_id, USER_ID);
    ck_assert_int_eq(out->amount_cents, TOTAL_CENTS);
    ck_assert_str_eq(out->currency, CURRENCY);
    ck_assert_str_eq(out->ledger_entry_id, LEDGER_ID);
    assert_repacks_identically(&out->base, bytes, len);

    shop__events__v1__payment_refunded__free_unpacked(out, NULL);
    free(bytes);
}
END_TEST

/* Every saga event, with the ce_type header value that names it. */
static const struct {
    const ProtobufCMessageDescriptor *desc;
    const char *ce_type;
} event_types[] = {
    {&shop__events__v1__order_created__descriptor, "shop.events.v1.OrderCreated"},
    {&shop__events__v1__stock_reserved__descriptor, "shop.events.v1.StockReserved"},
    {&shop__events__v1__stock_rejected__descriptor, "shop.events.v1.StockRejected"},
    {&shop__events__v1__payment_completed__descriptor, "shop.events.v1.PaymentCompleted"},
    {&shop__events__v1__payment_failed__descriptor, "shop.events.v1.PaymentFailed"},
    {&shop__events__v1__order_confirmed__descriptor, "shop.events.v1.OrderConfirmed"},
    {&shop__events__v1__order_cancelled__descriptor, "shop.events.v1.OrderCancelled"},
    {&shop__events__v1__stock_committed__descriptor, "shop.events.v1.StockCommitted"},
    {&shop__events__v1__stock_released__descriptor, "shop.events.v1.StockReleased"},
    {&shop__events__v1__payment_refunded__descriptor, "shop.events.v1.PaymentRefunded"},
};

START_TEST(test_event_descriptor_names_are_ce_types)
{
    for (size_t i = 0; i < ARRAY_LEN(event_types); i++) {
        ck_assert_str_eq(event_types[i].desc->name, event_types[i].ce_type);
        ck_assert_str_eq(event_types[i].desc->package_name, "shop.events.v1");
    }
}
END_TEST

START_TEST(test_every_event_carries_order_id_as_field_1)
{
    /* The Kafka key is the order_id: every event must carry it, in the same place. */
    for (size_t i = 0; i < ARRAY_LEN(event_types); i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(event_types[i].desc, "order_id");
        ck_assert_msg(f != NULL, "%s has no order_id", event_types[i].ce_type);
        ck_assert_uint_eq(f->id, 1);
        ck_assert_int_eq(f->type, PROTOBUF_C_TYPE_STRING);
        ck_assert_int_eq(f->label, PROTOBUF_C_LABEL_NONE);
    }
}
END_TEST

START_TEST(test_status_details_round_trip)
{
    /* google.rpc.Status {code, message, details: [Any{BadRequest}]}: the field numbers
     * of the public protos, so any gRPC client's status library reads our trailer. */
    Google__Rpc__BadRequest__FieldViolation quantity =
        GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    Google__Rpc__BadRequest__FieldViolation email = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    Google__Rpc__BadRequest__FieldViolation *violations[] = {&quantity, &email};
    Google__Rpc__BadRequest bad = GOOGLE__RPC__BAD_REQUEST__INIT;
    quantity.field = "lines[2].quantity";
    quantity.description = "must be 1..1000";
    email.field = "email";
    email.description = "is already registered";
    bad.n_field_violations = ARRAY_LEN(violations);
    bad.field_violations = violations;
    assert_every_field_set(&bad.base);
    size_t bad_len = 0;
    uint8_t *bad_bytes = pack_message(&bad.base, &bad_len);

    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/google.rpc.BadRequest";
    any.value = (ProtobufCBinaryData){.len = bad_len, .data = bad_bytes};
    Google__Protobuf__Any *details[] = {&any};
    Google__Rpc__Status in = GOOGLE__RPC__STATUS__INIT;
    in.code = 3;
    in.message = "invalid request";
    in.n_details = 1;
    in.details = details;
    assert_every_field_set(&in.base);

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    /* Status.code = 3 is field 1, varint: the first two bytes on the wire. */
    ck_assert_uint_eq(bytes[0], 0x08);
    ck_assert_uint_eq(bytes[1], 3);
    Google__Rpc__Status *out = google__rpc__status__unpack(NULL, len, bytes);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(out->code, 3);
    ck_assert_str_eq(out->message, "invalid request");
    ck_assert_uint_eq(out->n_details, 1);
    ck_assert_str_eq(out->details[0]->type_url, "type.googleapis.com/google.rpc.BadRequest");
    Google__Rpc__BadRequest *got = google__rpc__bad_request__unpack(
        NULL, out->details[0]->value.len, out->details[0]->value.data);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(got->n_field_violations, 2);
    ck_assert_str_eq(got->field_violations[0]->field, "lines[2].quantity");
    ck_assert_str_eq(got->field_violations[0]->description, "must be 1..1000");
    ck_assert_str_eq(got->field_violations[1]->field, "email");
    ck_assert_str_eq(got->field_violations[1]->description, "is already registered");
    assert_repacks_identically(&out->base, bytes, len);

    google__rpc__bad_request__free_unpacked(got, NULL);
    google__rpc__status__free_unpacked(out, NULL);
    free(bytes);
    free(bad_bytes);
}
END_TEST

/* ---- service descriptors ----------------------------------------------------------- */

/* A method and the stem of its messages: <stem>Request / <stem>Response. */
struct expected_method {
    const char *name;
    const char *stem;
};

static void assert_service_methods(const ProtobufCServiceDescriptor *svc, const char *full_name,
                                   const char *package, const struct expected_method *want,
                                   size_t n_want)
{
    char buf[256];

    ck_assert_str_eq(svc->name, full_name);
    ck_assert_str_eq(svc->package, package);
    ck_assert_uint_eq(svc->n_methods, n_want);
    for (size_t i = 0; i < n_want; i++) {
        const ProtobufCMethodDescriptor *m =
            protobuf_c_service_descriptor_get_method_by_name(svc, want[i].name);
        ck_assert_msg(m != NULL, "%s has no method %s", full_name, want[i].name);
        ck_assert_str_eq(m->name, want[i].name);

        snprintf(buf, sizeof buf, "%s.%sRequest", package, want[i].stem);
        ck_assert_str_eq(m->input->name, buf);
        snprintf(buf, sizeof buf, "%s.%sResponse", package, want[i].stem);
        ck_assert_str_eq(m->output->name, buf);
    }
}

START_TEST(test_order_service_has_exactly_its_methods)
{
    static const struct expected_method want[] = {
        {"CreateOrder", "CreateOrder"},
        {"GetOrder", "GetOrder"},
        {"ListOrders", "ListOrders"},
        {"CancelOrder", "CancelOrder"},
    };
    assert_service_methods(&shop__order__v1__order_service__descriptor,
                           "shop.order.v1.OrderService", "shop.order.v1", want, ARRAY_LEN(want));
}
END_TEST

START_TEST(test_product_service_has_exactly_its_methods)
{
    static const struct expected_method want[] = {
        {"CreateProduct", "CreateProduct"},
        {"GetProduct", "GetProduct"},
        {"BatchGetProducts", "BatchGetProducts"},
        {"ListProducts", "ListProducts"},
        {"UpdateProduct", "UpdateProduct"},
        {"ArchiveProduct", "ArchiveProduct"},
        {"SetStock", "SetStock"},
        {"AdjustStock", "AdjustStock"},
        {"GetStock", "GetStock"},
    };
    assert_service_methods(&shop__product__v1__product_service__descriptor,
                           "shop.product.v1.ProductService", "shop.product.v1", want,
                           ARRAY_LEN(want));
}
END_TEST

START_TEST(test_user_service_has_exactly_its_methods)
{
    static const struct expected_method want[] = {
        {"CreateUser", "CreateUser"},
        {"VerifyCredentials", "VerifyCredentials"},
        {"GetUser", "GetUser"},
        {"UpdateProfile", "UpdateProfile"},
        {"GetPreferences", "GetPreferences"},
        {"UpdatePreferences", "UpdatePreferences"},
        {"GetWallet", "GetWallet"},
        {"Deposit", "Deposit"},
    };
    assert_service_methods(&shop__user__v1__user_service__descriptor, "shop.user.v1.UserService",
                           "shop.user.v1", want, ARRAY_LEN(want));
}
END_TEST

START_TEST(test_health_service_has_exactly_check)
{
    static const struct expected_method want[] = {
        {"Check", "HealthCheck"},
    };
    assert_service_methods(&grpc__health__v1__health__descriptor, "grpc.health.v1.Health",
                           "grpc.health.v1", want, ARRAY_LEN(want));
}
END_TEST

START_TEST(test_health_serving_reply_is_08_01)
{
    /* The bytes standard health clients expect for SERVING (docs/libraries.md). */
    static const uint8_t serving[] = {0x08, 0x01};
    Grpc__Health__V1__HealthCheckResponse in = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    in.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;

    size_t len = 0;
    uint8_t *bytes = pack_message(&in.base, &len);
    ck_assert_uint_eq(len, sizeof serving);
    ck_assert_mem_eq(bytes, serving, sizeof serving);
    free(bytes);

    const ProtobufCEnumDescriptor *e =
        &grpc__health__v1__health_check_response__serving_status__descriptor;
    ck_assert_str_eq(protobuf_c_enum_descriptor_get_value(e, 0)->name, "UNKNOWN");
    ck_assert_str_eq(protobuf_c_enum_descriptor_get_value(e, 1)->name, "SERVING");
    ck_assert_str_eq(protobuf_c_enum_descriptor_get_value(e, 2)->name, "NOT_SERVING");
    ck_assert_str_eq(protobuf_c_enum_descriptor_get_value(e, 3)->name, "SERVICE_UNKNOWN");
}
END_TEST

/* ---- schema conventions ------------------------------------------------------------ */

#define MAX_SCHEMA_ITEMS 256

/* Every message and enum reachable from the shop services and the events. */
struct schema {
    const ProtobufCMessageDescriptor *messages[MAX_SCHEMA_ITEMS];
    size_t n_messages;
    const ProtobufCEnumDescriptor *enums[MAX_SCHEMA_ITEMS];
    size_t n_enums;
};

static void schema_add_enum(struct schema *s, const ProtobufCEnumDescriptor *e)
{
    for (size_t i = 0; i < s->n_enums; i++) {
        if (s->enums[i] == e) {
            return;
        }
    }
    ck_assert_uint_lt(s->n_enums, MAX_SCHEMA_ITEMS);
    s->enums[s->n_enums++] = e;
}

static void schema_add_message(struct schema *s, const ProtobufCMessageDescriptor *m)
{
    for (size_t i = 0; i < s->n_messages; i++) {
        if (s->messages[i] == m) {
            return;
        }
    }
    ck_assert_uint_lt(s->n_messages, MAX_SCHEMA_ITEMS);
    s->messages[s->n_messages++] = m;
    for (unsigned i = 0; i < m->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &m->fields[i];
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            schema_add_message(s, f->descriptor);
        } else if (f->type == PROTOBUF_C_TYPE_ENUM) {
            schema_add_enum(s, f->descriptor);
        }
    }
}

static void schema_add_service(struct schema *s, const ProtobufCServiceDescriptor *svc)
{
    for (unsigned i = 0; i < svc->n_methods; i++) {
        schema_add_message(s, svc->methods[i].input);
        schema_add_message(s, svc->methods[i].output);
    }
}

/* The shop schema; grpc.health.v1 and google.rpc follow their upstream names and are
 * left out. */
static void schema_collect_shop(struct schema *s)
{
    memset(s, 0, sizeof *s);
    schema_add_service(s, &shop__order__v1__order_service__descriptor);
    schema_add_service(s, &shop__product__v1__product_service__descriptor);
    schema_add_service(s, &shop__user__v1__user_service__descriptor);
    for (size_t i = 0; i < ARRAY_LEN(event_types); i++) {
        schema_add_message(s, event_types[i].desc);
    }
}

/* "PaymentFailureReason" -> "PAYMENT_FAILURE_REASON_" */
static void enum_value_prefix(const char *short_name, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = short_name; *p != '\0' && n + 3 < size; p++) {
        if (*p >= 'A' && *p <= 'Z' && p != short_name) {
            out[n++] = '_';
        }
        out[n++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
    }
    out[n++] = '_';
    out[n] = '\0';
}

START_TEST(test_shop_enums_start_with_unspecified)
{
    /* Listed by hand as well, so the walk itself is checked to reach every enum. */
    static const ProtobufCEnumDescriptor *const known[] = {
        &shop__common__v1__order_status__descriptor,
        &shop__common__v1__cancel_reason__descriptor,
        &shop__events__v1__reject_reason__descriptor,
        &shop__events__v1__payment_failure_reason__descriptor,
        &shop__events__v1__release_source__descriptor,
        &shop__user__v1__role__descriptor,
        &shop__user__v1__ledger_entry_kind__descriptor,
    };
    struct schema s;
    char want[128];

    schema_collect_shop(&s);
    ck_assert_uint_eq(s.n_enums, ARRAY_LEN(known));
    for (size_t i = 0; i < ARRAY_LEN(known); i++) {
        bool reached = false;
        for (size_t j = 0; j < s.n_enums; j++) {
            reached = reached || s.enums[j] == known[i];
        }
        ck_assert_msg(reached, "%s is not used by any field", known[i]->name);
    }
    for (size_t i = 0; i < s.n_enums; i++) {
        const ProtobufCEnumDescriptor *e = s.enums[i];
        const ProtobufCEnumValue *zero = protobuf_c_enum_descriptor_get_value(e, 0);
        ck_assert_msg(zero != NULL, "%s has no value 0", e->name);
        enum_value_prefix(e->short_name, want, sizeof want);
        strncat(want, "UNSPECIFIED", sizeof want - strlen(want) - 1);
        ck_assert_str_eq(zero->name, want);
    }
}
END_TEST

START_TEST(test_shop_enum_values_carry_their_enum_prefix)
{
    struct schema s;
    char prefix[128];

    schema_collect_shop(&s);
    for (size_t i = 0; i < s.n_enums; i++) {
        const ProtobufCEnumDescriptor *e = s.enums[i];
        enum_value_prefix(e->short_name, prefix, sizeof prefix);
        for (unsigned j = 0; j < e->n_values; j++) {
            ck_assert_msg(strncmp(e->values[j].name, prefix, strlen(prefix)) == 0,
                          "%s value %s lacks prefix %s", e->name, e->values[j].name, prefix);
        }
    }
}
END_TEST

static bool is_snake_case(const char *name)
{
    if (!(name[0] >= 'a' && name[0] <= 'z')) {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok || (p[0] == '_' && p[1] == '_')) {
            return false;
        }
    }
    return name[strlen(name) - 1] != '_';
}

START_TEST(test_shop_field_names_are_snake_case)
{
    /* The gateway uses the field names as REST JSON names (no json_name in protobuf-c). */
    struct schema s;

    schema_collect_shop(&s);
    ck_assert_uint_gt(s.n_messages, 0);
    for (size_t i = 0; i < s.n_messages; i++) {
        const ProtobufCMessageDescriptor *m = s.messages[i];
        for (unsigned j = 0; j < m->n_fields; j++) {
            ck_assert_msg(is_snake_case(m->fields[j].name), "%s.%s is not snake_case", m->name,
                          m->fields[j].name);
        }
    }
}
END_TEST

START_TEST(test_update_masks_are_repeated_strings_naming_siblings)
{
    /* A mask may only name fields of its own request, never itself or the target id;
     * `extra` is the one field of a request that is not data (UpdateProduct's
     * expected_updated_at, the If-Match version), declared here so none hides. */
    static const struct {
        const ProtobufCMessageDescriptor *desc;
        const char *const names[7];
        const char *extra;
    } masks[] = {
        {&shop__product__v1__update_product_request__descriptor,
         {"sku", "name", "description", "price_cents", "currency", "active", NULL},
         "expected_updated_at"},
        {&shop__user__v1__update_profile_request__descriptor,
         {"display_name", "phone", "shipping_address", NULL},
         NULL},
        {&shop__user__v1__update_preferences_request__descriptor,
         {"language", "currency", "marketing_opt_in", NULL},
         NULL},
    };
    struct schema s;
    size_t n_with_mask = 0;

    schema_collect_shop(&s);
    for (size_t i = 0; i < s.n_messages; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(s.messages[i], "update_mask");
        if (f == NULL) {
            continue;
        }
        n_with_mask++;
        ck_assert_int_eq(f->label, PROTOBUF_C_LABEL_REPEATED);
        ck_assert_int_eq(f->type, PROTOBUF_C_TYPE_STRING);
    }
    ck_assert_uint_eq(n_with_mask, ARRAY_LEN(masks));

    for (size_t i = 0; i < ARRAY_LEN(masks); i++) {
        const ProtobufCMessageDescriptor *m = masks[i].desc;
        size_t n_names = 0;
        for (; masks[i].names[n_names] != NULL; n_names++) {
            ck_assert_msg(
                protobuf_c_message_descriptor_get_field_by_name(m, masks[i].names[n_names]) != NULL,
                "%s has no field %s", m->name, masks[i].names[n_names]);
        }
        if (masks[i].extra != NULL)
            ck_assert_ptr_nonnull(
                protobuf_c_message_descriptor_get_field_by_name(m, masks[i].extra));
        /* Maskable fields + the target id + update_mask itself (+ the declared extra):
         * nothing unmaskable hides. */
        ck_assert_uint_eq(m->n_fields, n_names + 2 + (masks[i].extra != NULL ? 1 : 0));
    }
}
END_TEST

/* ---- runner ------------------------------------------------------------------------ */

static void add_case(Suite *suite, const TTest *test)
{
    tcase_add_test(check_case(suite, test->name, TEST_TIMEOUT_S), test);
}

static Suite *contracts_suite(void)
{
    Suite *suite = suite_create("contracts");

    add_case(suite, test_order_created_round_trips);
    add_case(suite, test_stock_reserved_round_trips);
    add_case(suite, test_stock_rejected_round_trips);
    add_case(suite, test_payment_completed_round_trips);
    add_case(suite, test_payment_failed_round_trips);
    add_case(suite, test_order_confirmed_round_trips);
    add_case(suite, test_order_cancelled_round_trips);
    add_case(suite, test_stock_committed_round_trips);
    add_case(suite, test_stock_released_round_trips);
    add_case(suite, test_payment_refunded_round_trips);
    add_case(suite, test_event_descriptor_names_are_ce_types);
    add_case(suite, test_every_event_carries_order_id_as_field_1);
    add_case(suite, test_status_details_round_trip);
    add_case(suite, test_order_service_has_exactly_its_methods);
    add_case(suite, test_product_service_has_exactly_its_methods);
    add_case(suite, test_user_service_has_exactly_its_methods);
    add_case(suite, test_health_service_has_exactly_check);
    add_case(suite, test_health_serving_reply_is_08_01);
    add_case(suite, test_shop_enums_start_with_unspecified);
    add_case(suite, test_shop_enum_values_carry_their_enum_prefix);
    add_case(suite, test_shop_field_names_are_snake_case);
    add_case(suite, test_update_masks_are_repeated_strings_naming_siblings);
    return suite;
}

int main(void)
{
    return check_run(contracts_suite(), CK_FORK_GETENV);
}
