/*
 * fuzz_saga_event: what the saga consumer makes of a Kafka message — CloudEvents
 * headers (common/src/kfk_ce.c) and the event's protobuf value — through
 * saga__decode (common/src/saga_batch.c), the very function saga_decode calls on
 * every consumed message, with a route for each event of proto/shop/events/v1.
 *
 * Input framing (text, so seeds are readable):
 *     name:value\n      one header per line; a line without ':' is a header whose
 *     ...               value is null (Kafka allows it); at most MAX_HEADERS lines
 *     \n                an empty line ends the headers
 *     <value bytes>     the rest: the message value (protobuf)
 * Names are cut at a NUL (librdkafka hands them over as C strings); values are bytes.
 *
 * Invariants: the outcome matches the route table (PENDING: routed, value unpacked
 * as the route's type; IGNORED: no route for ce_type; POISON: ERR_INVALID with a
 * message); attributes that parsed are what kfk_ce_headers accepts (kfk.h says it
 * rejects no more than kfk_ce_parse, bar an invalid traceparent) and re-encode to
 * headers that parse to the same attributes; a kept traceparent is valid (the log
 * context takes its trace id with trace_id_of); an unpacked event packs, and decodes
 * again from what it packed to, to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/kfk.h"
#include "common/trace.h"
#include "saga_internal.h"
#include "shop/events/v1/events.pb-c.h"

#define MAX_HEADERS 32

static int handler(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx, err_t *err)
{
    abort(); /* decoding never runs a handler */
}

/* Every event of the contract has a route in one service or another. */
static const saga_route_t routes[] = {
    {&shop__events__v1__order_created__descriptor, handler, NULL},
    {&shop__events__v1__stock_reserved__descriptor, handler, NULL},
    {&shop__events__v1__stock_rejected__descriptor, handler, NULL},
    {&shop__events__v1__payment_completed__descriptor, handler, NULL},
    {&shop__events__v1__payment_failed__descriptor, handler, NULL},
    {&shop__events__v1__order_confirmed__descriptor, handler, NULL},
    {&shop__events__v1__order_cancelled__descriptor, handler, NULL},
    {&shop__events__v1__stock_committed__descriptor, handler, NULL},
    {&shop__events__v1__stock_released__descriptor, handler, NULL},
    {&shop__events__v1__payment_refunded__descriptor, handler, NULL},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static void fail(const char *what, const err_t *err)
{
    fprintf(stderr, "fuzz_saga_event: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    abort();
}

static bool same(const char *x, const char *y)
{
    return (x == NULL && y == NULL) || (x != NULL && y != NULL && strcmp(x, y) == 0);
}

/* The attributes go out as headers (the producer's side) and come back the same. */
static void check_ce_round_trip(const kfk_ce_t *ce, arena_t *a)
{
    kfk_header_t h[KFK_CE_HEADERS_MAX];
    err_t err = ERR_INIT;
    int n = kfk_ce_headers(ce, h, &err);
    if (n < 0)
        fail("kfk_ce_headers refuses attributes kfk_ce_parse accepted", &err);
    kfk_ce_t back;
    if (kfk_ce_parse(h, (size_t)n, a, &back, &err) != 0)
        fail("kfk_ce_parse refuses what kfk_ce_headers wrote", &err);
    if (!same(back.id, ce->id) || !same(back.type, ce->type) || !same(back.source, ce->source) ||
        !same(back.time, ce->time) || !same(back.traceparent, ce->traceparent))
        fail("attributes changed through kfk_ce_headers and kfk_ce_parse", NULL);
}

/* The event packs, and what it packs to decodes (headers and all) and packs alike. */
static void check_value_round_trip(const saga_event_t *ev, const saga_route_t *route, arena_t *a)
{
    size_t n = protobuf_c_message_get_packed_size(ev->msg);
    uint8_t *buf = arena_alloc(a, n + 1);
    if (protobuf_c_message_pack(ev->msg, buf) != n)
        fail("packed size differs from get_packed_size", NULL);
    kfk_header_t h[KFK_CE_HEADERS_MAX];
    err_t err = ERR_INIT;
    int nh = kfk_ce_headers(&ev->ce, h, &err);
    saga_event_t again = {0};
    const saga_route_t *r2;
    if (nh < 0 ||
        saga__decode(routes, N_ROUTES, h, (size_t)nh, buf, n, a, &again, &r2, &err) !=
            SAGA_PENDING ||
        r2 != route)
        fail("an event re-encoded by the producer's functions does not decode", &err);
    size_t n2 = protobuf_c_message_get_packed_size(again.msg);
    uint8_t *buf2 = arena_alloc(a, n2 + 1);
    protobuf_c_message_pack(again.msg, buf2);
    if (n2 != n || memcmp(buf, buf2, n) != 0)
        fail("pack(unpack(pack(event))) != pack(event)", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    arena_t *a = arena_new(0);
    kfk_header_t headers[MAX_HEADERS];
    size_t n_headers = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl != NULL ? nl : end;
        if (line_end == p) { /* the empty line: the value follows */
            p++;
            break;
        }
        if (n_headers < MAX_HEADERS) {
            const char *colon = memchr(p, ':', (size_t)(line_end - p));
            const char *name_end = colon != NULL ? colon : line_end;
            kfk_header_t *h = &headers[n_headers++];
            h->name = arena_strndup(a, p, (size_t)(name_end - p));
            /* The value in a buffer of its own, so ASan sees a read past its end. */
            h->len = colon != NULL ? (size_t)(line_end - colon - 1) : 0;
            h->value = colon != NULL ? arena_memdup(a, colon + 1, h->len) : NULL;
        }
        p = nl != NULL ? nl + 1 : end;
    }
    size_t len = (size_t)(end - p);
    void *value = len > 0 ? arena_memdup(a, p, len) : NULL;

    saga_event_t ev = {.topic = "order.events", .key = ""};
    const saga_route_t *route = (const saga_route_t *)1;
    err_t err = ERR_INIT;
    saga_outcome_t out =
        saga__decode(routes, N_ROUTES, headers, n_headers, value, len, a, &ev, &route, &err);
    switch (out) {
    case SAGA_PENDING:
        if (route == NULL || ev.msg == NULL || ev.msg->descriptor != route->type ||
            strcmp(route->type->name, ev.ce.type) != 0)
            fail("pending without its route or its unpacked event", NULL);
        break;
    case SAGA_IGNORED:
        if (route != NULL || ev.msg != NULL || ev.ce.type == NULL)
            fail("ignored with a route or an event", NULL);
        for (size_t i = 0; i < N_ROUTES; i++)
            if (strcmp(routes[i].type->name, ev.ce.type) == 0)
                fail("ignored an event type that has a route", NULL);
        break;
    case SAGA_POISON:
        if (err.code != ERR_INVALID || err.msg[0] == '\0' || ev.msg != NULL)
            fail("poison without ERR_INVALID and a message", &err);
        if (route == NULL && ev.ce.id != NULL)
            fail("bad headers left attributes behind", NULL);
        break;
    default:
        fail("an outcome decoding cannot have", NULL);
    }
    if (ev.ce.id != NULL) {
        if (ev.ce.traceparent != NULL && (strlen(ev.ce.traceparent) < TRACE_PARENT_LEN ||
                                          !trace_parent_valid(ev.ce.traceparent)))
            fail("kept an invalid traceparent", NULL);
        check_ce_round_trip(&ev.ce, a);
    }
    if (out == SAGA_PENDING)
        check_value_round_trip(&ev, route, a);
    arena_free(a);
    return 0;
}
