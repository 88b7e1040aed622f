/*
 * product_fields: the rules of a product's fields, one case per row: the fields a
 * write names (mask) are checked and only those, each bad field is one violation
 * naming it, "" currency becomes USD, and the limits are inclusive.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "product_repo.h"

#define TEST_TIMEOUT_S 10

static char long_text[PRODUCT_DESCRIPTION_MAX + 2];

static const char *repeat(char c, size_t n)
{
    memset(long_text, c, n);
    long_text[n] = '\0';
    return long_text;
}

typedef struct {
    const char *what;
    product_fields_t f;
    const char *bad; /* the one field reported, or NULL for valid */
} field_case_t;

static void run(const field_case_t *c)
{
    err_t err = ERR_INIT;
    product_fields_t f = c->f;
    int rc = product_fields_check(&f, &err);
    if (!c->bad) {
        ck_assert_msg(rc == 0, "%s: %s", c->what, err.n_fields ? err.fields[0].field : err.msg);
        return;
    }
    ck_assert_msg(rc == ERR_INVALID, "%s: rc %d", c->what, rc);
    ck_assert_msg(err.n_fields == 1, "%s: %zu violations", c->what, err.n_fields);
    ck_assert_str_eq(err.fields[0].field, c->bad);
}

#define ALL                                                                                        \
    (PRODUCT_F_SKU | PRODUCT_F_NAME | PRODUCT_F_DESCRIPTION | PRODUCT_F_PRICE | PRODUCT_F_CURRENCY)

/* Valid fields, all named. */
static product_fields_t valid(void)
{
    return (product_fields_t){.mask = ALL,
                              .sku = "SKU-1.a_b",
                              .name = "Mug",
                              .description = "",
                              .price_cents = 0,
                              .currency = "USD"};
}

/* One change to the valid fields: the field set to a text or a price. */
typedef struct {
    const char *what;
    unsigned field; /* PRODUCT_F_* changed, 0 for none */
    const char *text;
    int64_t price;
    const char *bad; /* the one field reported, or NULL for valid */
} change_t;

START_TEST(test_each_rule)
{
    static const change_t cases[] = {
        {"all valid", 0, NULL, 0, NULL},
        {"sku empty", PRODUCT_F_SKU, "", 0, "sku"},
        {"sku with a space", PRODUCT_F_SKU, "a b", 0, "sku"},
        {"sku with a slash", PRODUCT_F_SKU, "a/b", 0, "sku"},
        {"sku non-ascii", PRODUCT_F_SKU, "caf\xc3\xa9", 0, "sku"},
        {"name empty", PRODUCT_F_NAME, "", 0, "name"},
        {"name with a control", PRODUCT_F_NAME, "a\x01", 0, "name"},
        {"name unicode", PRODUCT_F_NAME, "Caf\xc3\xa9 \xe2\x98\x95", 0, NULL},
        {"name bad utf-8", PRODUCT_F_NAME, "\xc3(", 0, "name"},
        {"description with newlines", PRODUCT_F_DESCRIPTION, "a\nb\tc", 0, NULL},
        {"description bad utf-8", PRODUCT_F_DESCRIPTION, "\xff", 0, "description"},
        {"price negative", PRODUCT_F_PRICE, NULL, -1, "price_cents"},
        {"price at the max", PRODUCT_F_PRICE, NULL, PRODUCT_PRICE_MAX, NULL},
        {"price over the max", PRODUCT_F_PRICE, NULL, PRODUCT_PRICE_MAX + 1, "price_cents"},
        {"currency EUR", PRODUCT_F_CURRENCY, "EUR", 0, "currency"},
        {"currency lower case", PRODUCT_F_CURRENCY, "usd", 0, "currency"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const change_t *c = &cases[i];
        field_case_t fc = {c->what, valid(), c->bad};
        if (c->field == PRODUCT_F_SKU)
            fc.f.sku = c->text;
        else if (c->field == PRODUCT_F_NAME)
            fc.f.name = c->text;
        else if (c->field == PRODUCT_F_DESCRIPTION)
            fc.f.description = c->text;
        else if (c->field == PRODUCT_F_PRICE)
            fc.f.price_cents = c->price;
        else if (c->field == PRODUCT_F_CURRENCY)
            fc.f.currency = c->text;
        run(&fc);
    }
}
END_TEST

START_TEST(test_only_the_named_fields_are_checked)
{
    run(&(field_case_t){
        "unnamed bad fields unchecked",
        {.mask = PRODUCT_F_NAME, .sku = "", .name = "ok", .price_cents = -5, .currency = "EUR"},
        NULL});
    run(&(field_case_t){"only the named bad field",
                        {.mask = PRODUCT_F_PRICE, .sku = "", .price_cents = -5},
                        "price_cents"});
}
END_TEST

START_TEST(test_limits_are_inclusive)
{
    char sku[PRODUCT_SKU_MAX + 2];
    memset(sku, 'a', sizeof(sku) - 1);
    sku[PRODUCT_SKU_MAX] = '\0';
    run(&(field_case_t){"sku at the max", {.mask = PRODUCT_F_SKU, .sku = sku}, NULL});
    sku[PRODUCT_SKU_MAX] = 'a';
    sku[PRODUCT_SKU_MAX + 1] = '\0';
    run(&(field_case_t){"sku over the max", {.mask = PRODUCT_F_SKU, .sku = sku}, "sku"});
    run(&(field_case_t){
        "name at the max", {.mask = PRODUCT_F_NAME, .name = repeat('n', PRODUCT_NAME_MAX)}, NULL});
    run(&(field_case_t){"name over the max",
                        {.mask = PRODUCT_F_NAME, .name = repeat('n', PRODUCT_NAME_MAX + 1)},
                        "name"});
    run(&(field_case_t){
        "description at the max",
        {.mask = PRODUCT_F_DESCRIPTION, .description = repeat('d', PRODUCT_DESCRIPTION_MAX)},
        NULL});
    run(&(field_case_t){
        "description over the max",
        {.mask = PRODUCT_F_DESCRIPTION, .description = repeat('d', PRODUCT_DESCRIPTION_MAX + 1)},
        "description"});
}
END_TEST

START_TEST(test_empty_currency_becomes_usd_and_every_bad_field_is_named)
{
    err_t err = ERR_INIT;
    product_fields_t f = valid();
    f.currency = "";
    ck_assert_int_eq(product_fields_check(&f, &err), 0);
    ck_assert_str_eq(f.currency, PRODUCT_CURRENCY);

    f = (product_fields_t){.mask = ALL,
                           .sku = "",
                           .name = "",
                           .description = "\xff",
                           .price_cents = -1,
                           .currency = "EUR"};
    ck_assert_int_eq(product_fields_check(&f, &err), ERR_INVALID);
    static const char *const named[] = {"sku", "name", "description", "price_cents", "currency"};
    ck_assert_uint_eq(err.n_fields, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_str_eq(err.fields[i].field, named[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("product_fields");
    TCase *tc = check_case(s, "rules", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_each_rule);
    tcase_add_test(tc, test_only_the_named_fields_are_checked);
    tcase_add_test(tc, test_limits_are_inclusive);
    tcase_add_test(tc, test_empty_currency_becomes_usd_and_every_bad_field_is_named);
    return check_run(s, CK_FORK_GETENV);
}
