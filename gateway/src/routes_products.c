/*
 * routes_products: the catalog, through product-svc. Reads are open to anyone
 * (a token, when sent, must be valid, and lets admins see archived products);
 * writes need the admin role (checked here, and again by the service).
 */
#include <string.h>

#include "routes.h"
#include "shop/product/v1/product_service.pb-c.h"

/* product-svc's NOT_FOUND, which a malformed id answers too. */
#define PRODUCTS_NOT_FOUND "product not found"

static const char *const products_deny_patch[] = {"product_id", "update_mask", NULL};
static const char *const products_deny_stock[] = {"product_id", NULL};
static const char *const products_list_query[] = {"q", "limit", "page_token", "include_inactive",
                                                  NULL};
static const char *const products_no_query[] = {NULL};
static const char *const products_renames[] = {"product_id", "id", NULL};

static void products_done_whole(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0)
        http_reply_error(r, err, 409, products_renames);
    else
        routes_reply_message(r, 200, resp);
}

/* GetProduct, UpdateProduct and ArchiveProduct answer {product}: the product. */
static void products_done_product(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, products_renames);
        return;
    }
    const Shop__Product__V1__GetProductResponse *res = (const void *)resp;
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
    routes_call(r, UPSTREAM_PRODUCT, "GetProduct", &req.base, products_done_product);
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
    routes_call(r, UPSTREAM_PRODUCT, "UpdateProduct", &req->base, products_done_product);
}

void routes_products_archive(http_req_t *r)
{
    const char *id = routes_path_id(r, PRODUCTS_NOT_FOUND);
    if (id == NULL)
        return;
    Shop__Product__V1__ArchiveProductRequest req = SHOP__PRODUCT__V1__ARCHIVE_PRODUCT_REQUEST__INIT;
    req.product_id = (char *)id;
    routes_call(r, UPSTREAM_PRODUCT, "ArchiveProduct", &req.base, products_done_product);
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
