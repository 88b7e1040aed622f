/*
 * routes_products: the catalog, through product-svc. Reads are open to anyone
 * (a token, when sent, must be valid, and lets admins see archived products);
 * writes need the admin role (checked here, and again by the service).
 *
 * HTTP caching and concurrency (RFC 9110 §8.8, §13):
 *   - A product's answers carry a strong ETag, "<updated_at in microseconds since
 *     the epoch>": every change of a product moves its updated_at (product-svc),
 *     and its JSON is a function of the row, so equal tags mean equal bytes.
 *   - GET /products/{id} with If-None-Match naming the current tag (weak
 *     comparison, or *) → 304 with ETag and no body.
 *   - PATCH and DELETE /products/{id} with If-Match: the tag goes to product-svc as
 *     expected_updated_at and is checked inside the UPDATE, so of two admins
 *     writing from the same version one wins and the other gets 412. A weak or
 *     foreign tag never matches (strong comparison) → 412; * matches any existing
 *     product; of a list, the first of our strong tags is the one checked. A
 *     missing product stays 404. Without If-Match a write is unconditional.
 *   - Catalog reads (the list and one product), 200 and 304: anonymous →
 *     Cache-Control: public, max-age=30 (a shared cache may serve a product up to
 *     30 s stale); with a token → private, no-cache (a browser may keep it but
 *     revalidates each time; admins see archived products). Both with
 *     Vary: Authorization. Every other answer stays no-store.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "routes.h"
#include "shop/product/v1/product_service.pb-c.h"

/* product-svc's NOT_FOUND, which a malformed id answers too. */
#define PRODUCTS_NOT_FOUND     "product not found"
#define PRODUCTS_CACHE_PUBLIC  "public, max-age=30"
#define PRODUCTS_CACHE_PRIVATE "private, no-cache"

static const char *const products_deny_patch[] = {"product_id", "update_mask",
                                                  "expected_updated_at", NULL};
static const char *const products_deny_stock[] = {"product_id", NULL};
static const char *const products_list_query[] = {"q", "limit", "page_token", "include_inactive",
                                                  NULL};
static const char *const products_no_query[] = {NULL};
static const char *const products_renames[] = {"product_id", "id", NULL};

/* The validator of a product: "<updated_at µs>", or NULL (no usable updated_at). */
static const char *products_etag(http_req_t *r, const Shop__Product__V1__Product *p)
{
    int64_t us;
    if (p == NULL || p->updated_at == NULL || clock_parse_rfc3339(p->updated_at, &us) != 0)
        return NULL;
    return arena_sprintf(http_arena(r), "\"%" PRId64 "\"", us);
}

/* One entity tag of a list header: *weak, and the opaque-tag with its quotes in
 * [*tag, *tag + *len). Returns the rest after the tag, or NULL at the end or on
 * a malformed entry. */
static const char *products_next_tag(const char *p, bool *weak, const char **tag, size_t *len)
{
    while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
    if (*p == '\0')
        return NULL;
    *weak = strncmp(p, "W/", 2) == 0;
    if (*weak)
        p += 2;
    if (*p != '"')
        return NULL;
    const char *end = strchr(p + 1, '"');
    if (end == NULL)
        return NULL;
    *tag = p;
    *len = (size_t)(end + 1 - p);
    return end + 1;
}

/* Whether the If-None-Match value names etag (weak comparison, RFC 9110 §13.1.2). */
static bool products_none_match_hits(const char *header, const char *etag)
{
    const char *h = header;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strcmp(h, "*") == 0)
        return true;
    bool weak;
    const char *tag;
    size_t len;
    for (const char *p = header; (p = products_next_tag(p, &weak, &tag, &len)) != NULL;)
        if (strlen(etag) == len && memcmp(tag, etag, len) == 0)
            return true;
    return false;
}

/* The expected_updated_at for an If-Match value (NULL header → "", unconditional):
 * * → "" (any existing product); else the first strong tag of ours as RFC 3339,
 * or the epoch, which no product has, so that the write answers 412 (or 404). */
static char *products_if_match(http_req_t *r, const char *header)
{
    if (header == NULL)
        return "";
    const char *h = header;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strcmp(h, "*") == 0)
        return "";
    bool weak;
    const char *tag;
    size_t len;
    for (const char *p = header; (p = products_next_tag(p, &weak, &tag, &len)) != NULL;) {
        if (weak || len < 3 || len > 20)
            continue;
        char *end;
        long long us = strtoll(tag + 1, &end, 10);
        if (end == tag + len - 1 && tag[1] >= '0' && tag[1] <= '9' && us > 0)
            return clock_rfc3339_in(http_arena(r), (int64_t)us);
    }
    return clock_rfc3339_in(http_arena(r), 0);
}

/* Cache-Control and Vary of a catalog read (200 or 304). */
static void products_cache_headers(http_req_t *r)
{
    http_header_add(r, "Cache-Control",
                    http_user_id(r)[0] == '\0' ? PRODUCTS_CACHE_PUBLIC : PRODUCTS_CACHE_PRIVATE);
    http_header_add(r, "Vary", "Authorization");
}

static void products_done_whole(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, products_renames);
        return;
    }
    products_cache_headers(r);
    routes_reply_message(r, 200, resp);
}

/* GetProduct answers {product}: the product, with its ETag; 304 when the client's
 * If-None-Match names it. */
static void products_done_get(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, products_renames);
        return;
    }
    const Shop__Product__V1__GetProductResponse *res = (const void *)resp;
    const char *etag = products_etag(r, res->product);
    const char *inm = http_header(r, "If-None-Match");
    products_cache_headers(r);
    if (etag != NULL)
        http_header_add(r, "ETag", etag);
    if (etag != NULL && inm != NULL && products_none_match_hits(inm, etag)) {
        http_reply_empty(r, 304);
        return;
    }
    routes_reply_message(r, 200, res->product != NULL ? &res->product->base : NULL);
}

/* UpdateProduct and ArchiveProduct answer {product}: the product and its new
 * ETag; a failed If-Match (FAILED_PRECONDITION) is 412. */
static void products_done_write(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code == ERR_PRECONDITION && http_header(r, "If-Match") != NULL) {
        http_reply_problem(r, 412, "the product has changed since the ETag in If-Match", NULL);
        return;
    }
    if (code != 0) {
        http_reply_error(r, err, 409, products_renames);
        return;
    }
    const Shop__Product__V1__UpdateProductResponse *res = (const void *)resp;
    const char *etag = products_etag(r, res->product);
    if (etag != NULL)
        http_header_add(r, "ETag", etag);
    routes_reply_message(r, 200, res->product != NULL ? &res->product->base : NULL);
}

void routes_products_list(http_req_t *r)
{
    Shop__Product__V1__ListProductsRequest req = SHOP__PRODUCT__V1__LIST_PRODUCTS_REQUEST__INIT;
    const char *token;
    if (!http_query_only(r, products_list_query) || !routes_list_params(r, &req.limit, &token))
        return;
    req.page_token = (char *)token;
    const char *q = http_query(r, "q");
    if (q != NULL && strlen(q) > 200) {
        err_t err = ERR_INIT;
        err_field_add(&err, "query.q", "at most 200 characters");
        http_reply_problem(r, 400, "invalid request", &err);
        return;
    }
    req.q = (char *)(q != NULL ? q : "");
    const char *inactive = http_query(r, "include_inactive");
    if (inactive != NULL && strcmp(inactive, "true") != 0 && strcmp(inactive, "false") != 0) {
        err_t err = ERR_INIT;
        err_field_add(&err, "query.include_inactive", "must be true or false");
        http_reply_problem(r, 400, "invalid request", &err);
        return;
    }
    req.include_inactive = inactive != NULL && strcmp(inactive, "true") == 0;
    routes_call(r, UPSTREAM_PRODUCT, "ListProducts", &req.base, products_done_whole);
}

void routes_products_get(http_req_t *r)
{
    const char *id = routes_path_id(r, PRODUCTS_NOT_FOUND);
    if (id == NULL || !http_query_only(r, products_no_query))
        return;
    Shop__Product__V1__GetProductRequest req = SHOP__PRODUCT__V1__GET_PRODUCT_REQUEST__INIT;
    req.product_id = (char *)id;
    routes_call(r, UPSTREAM_PRODUCT, "GetProduct", &req.base, products_done_get);
}

static void products_create_done(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, NULL);
        return;
    }
    const Shop__Product__V1__CreateProductResponse *res = (const void *)resp;
    if (res->product != NULL)
        http_header_add(r, "Location",
                        arena_sprintf(http_arena(r), "/api/v1/products/%s", res->product->id));
    const char *etag = products_etag(r, res->product);
    if (etag != NULL)
        http_header_add(r, "ETag", etag);
    routes_reply_message(r, 201, res->product != NULL ? &res->product->base : NULL);
}

void routes_products_create(http_req_t *r)
{
    ProtobufCMessage *req =
        http_body_message(r, &shop__product__v1__create_product_request__descriptor, NULL, true);
    if (req != NULL)
        routes_call(r, UPSTREAM_PRODUCT, "CreateProduct", req, products_create_done);
}

void routes_products_patch(http_req_t *r)
{
    const char *id = routes_path_id(r, PRODUCTS_NOT_FOUND);
    if (id == NULL)
        return;
    Shop__Product__V1__UpdateProductRequest *req = (void *)http_body_message(
        r, &shop__product__v1__update_product_request__descriptor, products_deny_patch, true);
    if (req == NULL || !routes_update_mask(r, &req->update_mask, &req->n_update_mask))
        return;
    req->product_id = (char *)id;
    req->expected_updated_at = products_if_match(r, http_header(r, "If-Match"));
    routes_call(r, UPSTREAM_PRODUCT, "UpdateProduct", &req->base, products_done_write);
}

void routes_products_archive(http_req_t *r)
{
    const char *id = routes_path_id(r, PRODUCTS_NOT_FOUND);
    if (id == NULL)
        return;
    Shop__Product__V1__ArchiveProductRequest req = SHOP__PRODUCT__V1__ARCHIVE_PRODUCT_REQUEST__INIT;
    req.product_id = (char *)id;
    req.expected_updated_at = products_if_match(r, http_header(r, "If-Match"));
    routes_call(r, UPSTREAM_PRODUCT, "ArchiveProduct", &req.base, products_done_write);
}

static void products_stock_done(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, products_renames);
        return;
    }
    const Shop__Product__V1__SetStockResponse *res = (const void *)resp;
    routes_reply_message(r, 200, res->stock != NULL ? &res->stock->base : NULL);
}

void routes_products_put_stock(http_req_t *r)
{
    const char *id = routes_path_id(r, PRODUCTS_NOT_FOUND);
    if (id == NULL)
        return;
    Shop__Product__V1__SetStockRequest *req = (void *)http_body_message(
        r, &shop__product__v1__set_stock_request__descriptor, products_deny_stock, true);
    if (req == NULL)
        return;
    if (json_object_get(http_body_json(r), "available") == NULL) {
        err_t err = ERR_INIT;
        err_field_add(&err, "available", "required");
        http_reply_problem(r, 400, "invalid request", &err);
        return;
    }
    req->product_id = (char *)id;
    routes_call(r, UPSTREAM_PRODUCT, "SetStock", &req->base, products_stock_done);
}
