/*
 * fuzz_json_pb: the gateway's JSON ⇄ protobuf mapping (gateway/src/json_pb.c) in
 * both directions, with the gateway's real descriptors.
 *
 * Input: the first byte picks an entry of `cases` (byte % N_CASES); the rest is
 *   - for a request case, a body as a client sends it: parsed with json_pb_parse
 *     under the route's deny list, as http_body_message does;
 *   - for a response case, protobuf bytes as a service answers: unpacked with
 *     protobuf-c, then rendered with json_pb_to_json, as routes_reply_message does.
 *
 * Invariants, beyond "no sanitizer report and no abort":
 *   - a parsed message packs and unpacks (protobuf-c accepts what json_pb built),
 *     and both render to the same JSON;
 *   - rendering, then parsing that JSON back (without the deny list: the output
 *     names every field) succeeds, once the nulls are dropped (JSON null is how
 *     json_pb writes the zero enum and a non-finite float, and neither is accepted
 *     as input), and renders the same again: the mapping is its own fixed point.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_pb.h"
#include "shop/gateway/v1/gateway.pb-c.h"
#include "shop/jsontest/v1/jsontest.pb-c.h"
#include "shop/order/v1/order_service.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"

/* The routes' deny lists (gateway/src/routes_*.c): fields a client may not set. */
static const char *const deny_user_key[] = {"user_id", "idempotency_key", NULL};
static const char *const deny_user_mask[] = {"user_id", "update_mask", NULL};
static const char *const deny_product_mask[] = {"product_id", "update_mask", NULL};
static const char *const deny_product[] = {"product_id", NULL};

typedef struct fuzz_case {
    const ProtobufCMessageDescriptor *desc;
    const char *const *deny;
    bool protobuf;    /* input is protobuf bytes (a service's answer), else a JSON body */
    bool render_only; /* protobuf: no parse-back (see case v) */
} fuzz_case_t;

/* Seeds name their case by the first byte: 'a' + index (tests/fuzz/corpus/json_pb). */
static const fuzz_case_t cases[] = {
    /* a */ {&shop__user__v1__create_user_request__descriptor, NULL, false, false},
    /* b */ {&shop__user__v1__verify_credentials_request__descriptor, NULL, false, false},
    /* c */ {&shop__gateway__v1__refresh_request__descriptor, NULL, false, false},
    /* d */ {&shop__gateway__v1__empty__descriptor, NULL, false, false},
    /* e */ {&shop__order__v1__create_order_request__descriptor, deny_user_key, false, false},
    /* f */ {&shop__product__v1__create_product_request__descriptor, NULL, false, false},
    /* g */
    {&shop__product__v1__update_product_request__descriptor, deny_product_mask, false, false},
    /* h */ {&shop__product__v1__set_stock_request__descriptor, deny_product, false, false},
    /* i */ {&shop__user__v1__update_profile_request__descriptor, deny_user_mask, false, false},
    /* j */ {&shop__user__v1__update_preferences_request__descriptor, deny_user_mask, false, false},
    /* k */ {&shop__user__v1__deposit_request__descriptor, deny_user_key, false, false},
    /* l */ {&shop__jsontest__v1__scalars__descriptor, NULL, false, false},
    /* m */ {&shop__jsontest__v1__node__descriptor, NULL, false, false},
    /* n */ {&shop__order__v1__create_order_response__descriptor, NULL, true, false},
    /* o */ {&shop__order__v1__list_orders_response__descriptor, NULL, true, false},
    /* p */ {&shop__product__v1__list_products_response__descriptor, NULL, true, false},
    /* q */ {&shop__product__v1__set_stock_response__descriptor, NULL, true, false},
    /* r */ {&shop__user__v1__get_user_response__descriptor, NULL, true, false},
    /* s */ {&shop__user__v1__get_wallet_response__descriptor, NULL, true, false},
    /* t */ {&shop__user__v1__deposit_response__descriptor, NULL, true, false},
    /* u */ {&shop__gateway__v1__token_response__descriptor, NULL, true, false},
    /* v: a uint64 above INT64_MAX renders as a JSON real, which json_pb refuses as
     * input (it bounds uint64 input to int64's range); no REST message has one */
    {&shop__jsontest__v1__scalars__descriptor, NULL, true, true},
    /* w */ {&shop__jsontest__v1__node__descriptor, NULL, true, false},
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static void fuzz_fail(const char *what, const json_t *j, const err_t *err)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    fprintf(stderr, "fuzz_json_pb: %s\n  json: %s\n  err: %s\n", what, text ? text : "-",
            err != NULL ? err->msg : "-");
    if (err != NULL)
        for (size_t i = 0; i < err->n_fields; i++)
            fprintf(stderr, "  %s: %s\n", err->fields[i].field, err->fields[i].description);
    free(text);
    abort();
}

/* A copy of j without JSON nulls, in objects and arrays alike (new reference). */
static json_t *drop_nulls(const json_t *j)
{
    if (json_is_object(j)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (!json_is_null(v))
                json_object_set_new(o, k, drop_nulls(v));
        }
        return o;
    }
    if (json_is_array(j)) {
        json_t *a = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!json_is_null(v))
                json_array_append_new(a, drop_nulls(v));
        }
        return a;
    }
    return json_deep_copy(j);
}

/* pack → unpack must give back a message that renders like m. */
static void check_pack(const ProtobufCMessage *m, const json_t *rendered)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (protobuf_c_message_pack(m, buf) != n)
        fuzz_fail("packed size differs from get_packed_size", rendered, NULL);
    ProtobufCMessage *u = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    if (u == NULL)
        fuzz_fail("a parsed message does not unpack after packing", rendered, NULL);
    json_t *again = json_pb_to_json(u);
    protobuf_c_message_free_unpacked(u, NULL);
    if (!json_equal(again, rendered))
        fuzz_fail("pack/unpack changed the message", rendered, NULL);
    json_decref(again);
}

/* The rendering of m, parsed back, renders the same (nulls aside). */
static void check_fixed_point(const ProtobufCMessageDescriptor *desc, const json_t *rendered)
{
    json_t *clean = drop_nulls(rendered);
    char *text = json_dumps(clean, JSON_COMPACT);
    if (text == NULL)
        fuzz_fail("json_pb_to_json gave JSON that does not serialize", clean, NULL);
    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    ProtobufCMessage *m = json_pb_parse(text, strlen(text), desc, NULL, a, &err);
    if (m == NULL)
        fuzz_fail("json_pb does not parse its own output", clean, &err);
    json_t *again = json_pb_to_json(m);
    json_t *again_clean = drop_nulls(again);
    if (!json_equal(again_clean, clean))
        fuzz_fail("render(parse(render(m))) differs from render(m)", clean, NULL);
    json_decref(again_clean);
    json_decref(again);
    arena_free(a);
    free(text);
    json_decref(clean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const fuzz_case_t *c = &cases[(uint8_t)(data[0] - 'a') % N_CASES];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    if (c->protobuf) {
        ProtobufCMessage *m = protobuf_c_message_unpack(c->desc, NULL, len, (const uint8_t *)body);
        if (m == NULL)
            return 0;
        json_t *j = json_pb_to_json(m);
        if (!c->render_only)
            check_fixed_point(c->desc, j);
        json_decref(j);
        protobuf_c_message_free_unpacked(m, NULL);
        return 0;
    }
    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    ProtobufCMessage *m = json_pb_parse(body, len, c->desc, c->deny, a, &err);
    if (m == NULL) {
        if (err.code != ERR_INVALID || err.msg[0] == '\0')
            fuzz_fail("a refused body without ERR_INVALID and a message", NULL, &err);
    } else {
        json_t *j = json_pb_to_json(m);
        check_pack(m, j);
        check_fixed_point(c->desc, j);
        json_decref(j);
    }
    arena_free(a);
    return 0;
}
