/*
 * product_fields: the rules of a product's fields (docs/architecture.md §3 product-svc),
 * checked before CreateProduct and UpdateProduct write them. Pure: no I/O.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/text.h"
#include "product_repo.h"

static void product_fields_sku(const char *sku, err_t *err)
{
    size_t n = strlen(sku);
    bool ok = n >= 1 && n <= PRODUCT_SKU_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)sku[i]) || sku[i] == '.' || sku[i] == '_' || sku[i] == '-';
    if (!ok)
        err_field_add(err, "sku", "must be 1..64 characters of A-Z, a-z, 0-9, '.', '_', '-'");
}

static void product_fields_description(const char *d, err_t *err)
{
    long n = text_utf8_len(d, TEXT_ALLOW_BLANKS);
    if (n < 0)
        err_field_add(err, "description", "must be utf-8 text without control characters");
    else if (n > PRODUCT_DESCRIPTION_MAX)
        err_field_add(err, "description", "must be at most 5000 characters");
}

static void product_fields_price(int64_t price, err_t *err)
{
    if (price < 0 || price > PRODUCT_PRICE_MAX)
        err_field_add(err, "price_cents", "must be 0..1000000000");
}

/* "" means USD, the one currency accepted for now (common.proto). */
static const char *product_fields_currency(const char *currency, err_t *err)
{
    if (!currency[0] || strcmp(currency, PRODUCT_CURRENCY) == 0)
        return PRODUCT_CURRENCY;
    err_field_add(err, "currency", "must be USD");
    return NULL;
}

int product_fields_check(product_fields_t *f, err_t *err)
{
    if (f->mask & PRODUCT_F_SKU)
        product_fields_sku(f->sku, err);
    if (f->mask & PRODUCT_F_NAME)
        text_check_chars("name", f->name, 1, PRODUCT_NAME_MAX, err);
    if (f->mask & PRODUCT_F_DESCRIPTION)
        product_fields_description(f->description, err);
    if (f->mask & PRODUCT_F_PRICE)
        product_fields_price(f->price_cents, err);
    if (f->mask & PRODUCT_F_CURRENCY)
        f->currency = product_fields_currency(f->currency, err);
    return err->code;
}
