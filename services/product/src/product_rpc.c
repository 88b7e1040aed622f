/*
 * product_rpc: shop.product.v1.ProductService (proto/shop/product/v1/
 * product_service.proto, whose comments list the status codes of every method).
 *
 * Each handler: who may call → validate every field (all violations at once, per
 * field) → one repository call → answer. Ids that are not UUIDs are NOT_FOUND, as
 * the contract says, without asking the database.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/page_token.h"
#include "common/rpc.h"
#include "common/svc.h"
#include "common/text.h"
#include "common/uuid.h"
#include "product.h"
#include "product_repo.h"
#include "shop/product/v1/product_service.pb-c.h"

#define PRODUCT_BATCH_MAX     100
#define PRODUCT_LIMIT_DEFAULT 20
#define PRODUCT_LIMIT_MAX     100
#define PRODUCT_QUERY_MAX     200
/* Bounds a stock figure so that available + reserved + sold can never overflow. */
#define PRODUCT_STOCK_MAX INT64_C(1000000000000)

typedef Shop__Product__V1__ProductService_Service product_service_t;

static db_pool_t *product_rpc_pool(rpc_call_t *call)
{
    return svc_pool(rpc_call_ctx(call));
}

/* The rest of the opening of a method on one product, after its caller and field
 * checks (a failure of which is already in err): an id the database may be asked
 * about (anything else is NOT_FOUND), then time left. Returns err->code. */
static int product_rpc_open(rpc_call_t *call, const char *id, err_t *err)
{
    if (err->code != 0)
        return err->code;
    if (!uuid_valid(id))
        return err_set_client(err, ERR_NOT_FOUND, "product not found");
    return rpc_call_check_deadline(call, err);
}

/* A taken sku is ALREADY_EXISTS with the field named. Returns err->code. */
static int product_rpc_sku_taken(err_t *err)
{
    return rpc_conflict_field(err, db_err_constraint(err, PRODUCT_SKU_KEY), "sku already exists",
                              "sku", "is already taken");
}

/* ---- answers ---- */

/* A product_row_t as the Product message (an rpc_msg_array builder). */
static void *product_rpc_product(arena_t *a, const void *row)
{
    const product_row_t *r = row;
    Shop__Product__V1__Product *p = rpc_msg_new(a, &shop__product__v1__product__descriptor);
    p->id = (char *)r->id;
    p->sku = (char *)r->sku;
    p->name = (char *)r->name;
    p->description = (char *)r->description;
    p->price_cents = r->price_cents;
    p->currency = (char *)r->currency;
    p->active = r->active;
    p->created_at = clock_rfc3339_in(a, r->created_us);
    p->updated_at = clock_rfc3339_in(a, r->updated_us);
    return p;
}

static Shop__Product__V1__Stock *product_rpc_stock(arena_t *a, const product_stock_t *s)
{
    Shop__Product__V1__Stock *out = rpc_msg_new(a, &shop__product__v1__stock__descriptor);
    out->product_id = (char *)s->product_id;
    out->available = s->available;
    out->reserved = s->reserved;
    out->sold = s->sold;
    return out;
}

/* ---- page tokens ----
 * A token (page_token.h) holds the last row of the previous page, (created_at, id),
 * for the query it was issued for: the scope is include_inactive and q. */

#define PRODUCT_TOKEN_KIND "product.ListProducts"

static const char *product_rpc_token_scope(arena_t *a, const char *q, bool include_inactive)
{
    return arena_sprintf(a, "%c%s", include_inactive ? '1' : '0', q);
}

/* The token after `last`; NULL if the row is out of a token's bounds. */
static char *product_rpc_token(rpc_call_t *call, const product_row_t *last,
                               const product_page_query_t *pq)
{
    arena_t *a = rpc_call_arena(call);
    page_cursor_t c = {.pos = last->created_us};
    snprintf(c.id, sizeof(c.id), "%s", last->id);
    return page_token_encode(svc_page_key(rpc_call_ctx(call)), a, PRODUCT_TOKEN_KIND,
                             product_rpc_token_scope(a, pq->q, pq->include_inactive), &c);
}

/* Fills the query's cursor from a token; a field violation on page_token if it is
 * not one this service issued for the same filter. */
static void product_rpc_parse_token(rpc_call_t *call, const char *token, product_page_query_t *pq,
                                    err_t *err)
{
    arena_t *a = rpc_call_arena(call);
    page_cursor_t c;
    if (page_token_field(svc_page_key(rpc_call_ctx(call)), PRODUCT_TOKEN_KIND,
                         product_rpc_token_scope(a, pq->q, pq->include_inactive), token,
                         "q or include_inactive", PAGE_CURSOR_ROW, &c, err) != 0)
        return;
    pq->has_after = true;
    pq->after_us = c.pos;
    pq->after_id = arena_strdup(a, c.id);
}

/* PRODUCT_RPC(get_thing, GetThing, GET_THING) { body }: product_rpc_get_thing, the handler
 * of ProductService/GetThing (rpc.h RPC_METHOD). */
#define PRODUCT_RPC(name, Name, NAME)                                                              \
    RPC_METHOD(product_rpc_, product_service_t, Shop__Product__V1__, SHOP__PRODUCT__V1__, name,    \
               Name, NAME)

/* ---- handlers ---- */

PRODUCT_RPC(create_product, CreateProduct, CREATE_PRODUCT)
{
    product_fields_t f = {.mask = PRODUCT_F_SKU | PRODUCT_F_NAME | PRODUCT_F_DESCRIPTION |
                                  PRODUCT_F_PRICE | PRODUCT_F_CURRENCY,
                          .sku = req->sku,
                          .name = req->name,
                          .description = req->description,
                          .price_cents = req->price_cents,
                          .currency = req->currency};
    product_row_t row;
    if (rpc_call_require_admin(call, err) != 0 || product_fields_check(&f, err) != 0 ||
        rpc_call_check_deadline(call, err) != 0 ||
        product_repo_create(product_rpc_pool(call), a, &f, &row, err) != 0)
        return product_rpc_sku_taken(err);
    LOG_INFO("product created", LOG_STR("product_id", row.id), LOG_STR("sku", row.sku));
    resp->product = product_rpc_product(a, &row);
    return 0;
}

PRODUCT_RPC(get_product, GetProduct, GET_PRODUCT)
{
    product_row_t row;
    if (product_rpc_open(call, req->product_id, err) != 0 ||
        product_repo_get(product_rpc_pool(call), a, req->product_id, &row, err) != 0)
        return err->code;
    resp->product = product_rpc_product(a, &row);
    return 0;
}

/* The batch's ids split into distinct well-formed ones (lower-case, to query) and the
 * distinct malformed ones (not found without asking). */
typedef struct product_batch {
    const char **ids;   /* lower-case, distinct */
    const char **given; /* ids[i] as the caller spelled it first */
    size_t n;
    const char **malformed;
    size_t n_malformed;
} product_batch_t;

static bool product_rpc_listed(const char *const *list, size_t n, const char *s, bool nocase)
{
    for (size_t i = 0; i < n; i++)
        if ((nocase ? strcasecmp(list[i], s) : strcmp(list[i], s)) == 0)
            return true;
    return false;
}

static void product_rpc_batch_split(arena_t *a, char **in, size_t n, product_batch_t *b)
{
    b->ids = arena_calloc(a, n, sizeof(*b->ids));
    b->given = arena_calloc(a, n, sizeof(*b->given));
    b->malformed = arena_calloc(a, n, sizeof(*b->malformed));
    for (size_t i = 0; i < n; i++) {
        if (!uuid_valid(in[i])) {
            if (!product_rpc_listed(b->malformed, b->n_malformed, in[i], false))
                b->malformed[b->n_malformed++] = in[i];
        } else if (!product_rpc_listed(b->ids, b->n, in[i], true)) {
            b->given[b->n] = in[i];
            b->ids[b->n++] = text_ascii_lower(a, in[i]);
        }
    }
}

PRODUCT_RPC(batch_get_products, BatchGetProducts, BATCH_GET_PRODUCTS)
{
    product_batch_t b = {0};
    product_row_t *rows = NULL;
    size_t n_rows = 0;
    if (req->n_product_ids < 1 || req->n_product_ids > PRODUCT_BATCH_MAX)
        err_field_add(err, "product_ids", "must hold 1..100 ids");
    else
        product_rpc_batch_split(a, req->product_ids, req->n_product_ids, &b);
    if (err->code != 0 || rpc_call_check_deadline(call, err) != 0 ||
        (b.n > 0 &&
         product_repo_batch_get(product_rpc_pool(call), a, b.ids, b.n, &rows, &n_rows, err) != 0))
        return err->code;
    resp->n_products = n_rows;
    resp->products = (Shop__Product__V1__Product **)rpc_msg_array(a, rows, n_rows, sizeof(*rows),
                                                                  product_rpc_product);
    resp->not_found_ids = arena_calloc(a, b.n + b.n_malformed + 1, sizeof(*resp->not_found_ids));
    for (size_t i = 0; i < b.n; i++) {
        bool found = false;
        for (size_t k = 0; k < n_rows && !found; k++)
            found = strcmp(rows[k].id, b.ids[i]) == 0;
        if (!found)
            resp->not_found_ids[resp->n_not_found_ids++] = (char *)b.given[i];
    }
    for (size_t i = 0; i < b.n_malformed; i++)
        resp->not_found_ids[resp->n_not_found_ids++] = (char *)b.malformed[i];
    return 0;
}

/* The page query from the request; field violations for limit, q and page_token. */
static int product_rpc_page_query(rpc_call_t *call,
                                  const Shop__Product__V1__ListProductsRequest *req,
                                  product_page_query_t *pq, err_t *err)
{
    if (req->include_inactive && rpc_call_require_admin(call, err) != 0)
        return err->code;
    *pq = (product_page_query_t){.q = req->q, .include_inactive = req->include_inactive};
    if (req->limit < 0 || req->limit > PRODUCT_LIMIT_MAX)
        err_field_add(err, "limit", "must be 0..100");
    pq->limit = req->limit ? req->limit : PRODUCT_LIMIT_DEFAULT;
    long q_len = text_utf8_len(req->q, TEXT_NO_CONTROLS);
    if (q_len < 0 || q_len > PRODUCT_QUERY_MAX)
        err_field_add(err, "q", "must be at most 200 characters of utf-8 text");
    if (req->page_token[0])
        product_rpc_parse_token(call, req->page_token, pq, err);
    return err->code;
}

PRODUCT_RPC(list_products, ListProducts, LIST_PRODUCTS)
{
    product_page_query_t pq;
    product_row_t *rows;
    size_t n;
    bool more;
    if (product_rpc_page_query(call, req, &pq, err) != 0 || rpc_call_check_deadline(call, err) != 0)
        return err->code;
    int limit = pq.limit++; /* one more row tells whether there is a next page */
    if (product_repo_list(product_rpc_pool(call), a, &pq, &rows, &n, err) != 0)
        return err->code;
    resp->n_products = rpc_page_take(n, limit, &more);
    resp->products = (Shop__Product__V1__Product **)rpc_msg_array(
        a, rows, resp->n_products, sizeof(*rows), product_rpc_product);
    if (more && !(resp->next_page_token = product_rpc_token(call, &rows[limit - 1], &pq)))
        return err_set(err, ERR_INTERNAL,
                       "product %s: created_at %" PRId64 " outside page tokens' bounds",
                       rows[limit - 1].id, rows[limit - 1].created_us);
    return 0;
}

/* The patch named by update_mask; field violations for the mask and the values. */
static int product_rpc_patch(const Shop__Product__V1__UpdateProductRequest *req,
                             product_fields_t *f, err_t *err)
{
    static const text_mask_name_t names[] = {{"sku", PRODUCT_F_SKU},
                                             {"name", PRODUCT_F_NAME},
                                             {"description", PRODUCT_F_DESCRIPTION},
                                             {"price_cents", PRODUCT_F_PRICE},
                                             {"currency", PRODUCT_F_CURRENCY},
                                             {"active", PRODUCT_F_ACTIVE}};
    *f = (product_fields_t){.sku = req->sku,
                            .name = req->name,
                            .description = req->description,
                            .price_cents = req->price_cents,
                            .currency = req->currency,
                            .active = req->active};
    f->mask = text_mask_bits(req->update_mask, req->n_update_mask, names,
                             sizeof(names) / sizeof(names[0]), err);
    return product_fields_check(f, err);
}

/* expected_updated_at ("" → -1, unconditional) as microseconds; a field violation
 * when malformed. Returns err->code. */
static int product_rpc_expected(const char *text, int64_t *us, err_t *err)
{
    *us = -1;
    if (text == NULL || text[0] == '\0')
        return err->code;
    if (clock_parse_rfc3339(text, us) != 0 || *us < 0) {
        *us = -1;
        err_field_add(err, "expected_updated_at", "must be an RFC 3339 time");
    }
    return err->code;
}

PRODUCT_RPC(update_product, UpdateProduct, UPDATE_PRODUCT)
{
    product_fields_t f;
    product_row_t row;
    int64_t expected_us;
    if (rpc_call_require_admin(call, err) != 0 || product_rpc_patch(req, &f, err) != 0 ||
        product_rpc_expected(req->expected_updated_at, &expected_us, err) != 0 ||
        product_rpc_open(call, req->product_id, err) != 0 ||
        product_repo_update(product_rpc_pool(call), a, req->product_id, &f, expected_us, &row,
                            err) != 0)
        return product_rpc_sku_taken(err);
    LOG_INFO("product updated", LOG_STR("product_id", row.id), LOG_INT("fields", f.mask));
    resp->product = product_rpc_product(a, &row);
    return 0;
}

PRODUCT_RPC(archive_product, ArchiveProduct, ARCHIVE_PRODUCT)
{
    product_row_t row;
    int64_t expected_us;
    if (rpc_call_require_admin(call, err) != 0 ||
        product_rpc_expected(req->expected_updated_at, &expected_us, err) != 0 ||
        product_rpc_open(call, req->product_id, err) != 0 ||
        product_repo_archive(product_rpc_pool(call), a, req->product_id, expected_us, &row, err) !=
            0)
        return err->code;
    LOG_INFO("product archived", LOG_STR("product_id", row.id));
    resp->product = product_rpc_product(a, &row);
    return 0;
}

PRODUCT_RPC(set_stock, SetStock, SET_STOCK)
{
    product_stock_t stock;
    if (rpc_call_require_admin(call, err) == 0 &&
        (req->available < 0 || req->available > PRODUCT_STOCK_MAX))
        err_field_add(err, "available", "must be 0..1000000000000");
    if (product_rpc_open(call, req->product_id, err) != 0 ||
        product_repo_stock_set(product_rpc_pool(call), a, req->product_id, req->available, &stock,
                               err) != 0)
        return err->code;
    LOG_INFO("stock set", LOG_STR("product_id", stock.product_id),
             LOG_INT("available", stock.available));
    resp->stock = product_rpc_stock(a, &stock);
    return 0;
}

PRODUCT_RPC(adjust_stock, AdjustStock, ADJUST_STOCK)
{
    product_stock_t stock;
    if (rpc_call_require_admin(call, err) == 0 &&
        (req->delta == 0 || req->delta < -PRODUCT_STOCK_MAX || req->delta > PRODUCT_STOCK_MAX))
        err_field_add(err, "delta", "must be non-zero, -1000000000000..1000000000000");
    if (product_rpc_open(call, req->product_id, err) != 0 ||
        product_repo_stock_adjust(product_rpc_pool(call), a, req->product_id, req->delta, &stock,
                                  err) != 0) {
        if (err->code == ERR_PRECONDITION)
            err_field_add(err, "delta", "would make available negative");
        return err->code;
    }
    LOG_INFO("stock adjusted", LOG_STR("product_id", stock.product_id),
             LOG_INT("delta", req->delta), LOG_INT("available", stock.available));
    resp->stock = product_rpc_stock(a, &stock);
    return 0;
}

PRODUCT_RPC(get_stock, GetStock, GET_STOCK)
{
    product_stock_t stock;
    if (rpc_call_require_admin(call, err) != 0 ||
        product_rpc_open(call, req->product_id, err) != 0 ||
        product_repo_stock_get(product_rpc_pool(call), a, req->product_id, &stock, err) != 0)
        return err->code;
    resp->stock = product_rpc_stock(a, &stock);
    return 0;
}

static product_service_t product_rpc_impl = SHOP__PRODUCT__V1__PRODUCT_SERVICE__INIT(product_rpc_);

ProtobufCService *const product_rpc_service = &product_rpc_impl.base;
