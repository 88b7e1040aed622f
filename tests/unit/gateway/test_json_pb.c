/*
 * json_pb: the JSON ⇄ protobuf mapping, data-driven (docs/style.md "Data-driven cases
 * as files"). Each directory under JSON_PB_CASES is one case:
 *   message     the full name of the message type ("shop.order.v1.CreateOrderRequest")
 *   input.json  the request body, byte for byte
 *   deny        optional: field names the route does not let the client set
 *   output.json the message the body must map to, rendered back to JSON, or
 *   error.json  {"malformed": true} or {"errors": [{"field", "description"}, ...]}
 *               (the violations expected, in order)
 * A case directory is enough to add a case: the runner lists them at start.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/json_pb.h"
#include "shop/gateway/v1/gateway.pb-c.h"
#include "shop/jsontest/v1/jsontest.pb-c.h"
#include "shop/order/v1/order_service.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"

#define MAX_CASES 256

static char *case_names[MAX_CASES];
static int n_cases;

static const ProtobufCMessageDescriptor *const descriptors[] = {
    &shop__order__v1__create_order_request__descriptor,
    &shop__order__v1__requested_line__descriptor,
    &shop__order__v1__order__descriptor,
    &shop__order__v1__timeline_entry__descriptor,
    &shop__product__v1__create_product_request__descriptor,
    &shop__product__v1__update_product_request__descriptor,
    &shop__product__v1__batch_get_products_request__descriptor,
    &shop__product__v1__adjust_stock_request__descriptor,
    &shop__user__v1__create_user_request__descriptor,
    &shop__user__v1__update_profile_request__descriptor,
    &shop__user__v1__update_preferences_request__descriptor,
    &shop__user__v1__deposit_request__descriptor,
    &shop__gateway__v1__refresh_request__descriptor,
    &shop__jsontest__v1__node__descriptor,
    &shop__jsontest__v1__scalars__descriptor,
};

static const ProtobufCMessageDescriptor *descriptor_named(const char *name)
{
    for (size_t i = 0; i < sizeof(descriptors) / sizeof(descriptors[0]); i++) {
        if (strcmp(descriptors[i]->name, name) == 0)
            return descriptors[i];
    }
    return NULL;
}

/* The whole file, NUL-terminated (*len without it); NULL when it does not exist. */
static char *read_file(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s/%s", JSON_PB_CASES, dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = '\0';
    if (len != NULL)
        *len = got;
    return buf;
}

/* Lines of a file as a NULL-terminated list (into words, which it owns). */
static void read_lines(char *text, char **words, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *w = text != NULL ? strtok_r(text, "\n", &save) : NULL; w != NULL && n + 1 < max;
         w = strtok_r(NULL, "\n", &save))
        words[n++] = w;
    words[n] = NULL;
}

static void trim_newline(char *s, size_t *len)
{
    while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r'))
        s[--*len] = '\0';
}

static void check_error(const char *name, const err_t *err, const char *expected_text)
{
    json_error_t je;
    json_t *exp = json_loads(expected_text, 0, &je);
    ck_assert_msg(exp != NULL, "%s: error.json does not parse: %s", name, je.text);
    ck_assert_int_eq(err->code, ERR_INVALID);
    if (json_is_true(json_object_get(exp, "malformed"))) {
        ck_assert_msg(strncmp(err->msg, "malformed JSON", 14) == 0,
                      "%s: expected malformed, got %s", name, err->msg);
        ck_assert_uint_eq(err->n_fields, 0);
    } else {
        json_t *errors = json_object_get(exp, "errors");
        ck_assert_msg(err->n_fields == json_array_size(errors), "%s: %zu violations, expected %zu",
                      name, err->n_fields, json_array_size(errors));
        for (size_t i = 0; i < err->n_fields; i++) {
            json_t *e = json_array_get(errors, i);
            ck_assert_str_eq(err->fields[i].field, json_string_value(json_object_get(e, "field")));
            ck_assert_str_eq(err->fields[i].description,
                             json_string_value(json_object_get(e, "description")));
        }
    }
    json_decref(exp);
}

static void check_output(const char *name, const ProtobufCMessage *m, const char *expected_text)
{
    json_error_t je;
    json_t *exp = json_loads(expected_text, 0, &je);
    ck_assert_msg(exp != NULL, "%s: output.json does not parse: %s", name, je.text);
    json_t *got = json_pb_to_json(m);
    char *got_s = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
    char *exp_s = json_dumps(exp, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_msg(json_equal(got, exp), "%s:\n got      %s\n expected %s", name, got_s, exp_s);
    free(got_s);
    free(exp_s);
    json_decref(got);
    json_decref(exp);
}

START_TEST(test_json_pb_case_maps_as_its_files_say)
{
    const char *name = case_names[_i];
    size_t len = 0;
    char *msg_name = read_file(name, "message", &len);
    ck_assert_msg(msg_name != NULL, "%s: no message file", name);
    trim_newline(msg_name, &len);
    const ProtobufCMessageDescriptor *desc = descriptor_named(msg_name);
    ck_assert_msg(desc != NULL, "%s: unknown message %s", name, msg_name);

    char *input = read_file(name, "input.json", &len);
    ck_assert_msg(input != NULL, "%s: no input.json", name);
    char *deny_text = read_file(name, "deny", NULL);
    char *deny[16];
    read_lines(deny_text, deny, 16);
    char *output = read_file(name, "output.json", NULL);
    char *error = read_file(name, "error.json", NULL);
    ck_assert_msg((output != NULL) != (error != NULL), "%s: need output.json or error.json", name);

    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    ProtobufCMessage *m = json_pb_parse(input, len, desc, (const char *const *)deny, a, &err);
    if (output != NULL) {
        ck_assert_msg(m != NULL, "%s: rejected: %s (%s: %s)", name, err.msg,
                      err.n_fields ? err.fields[0].field : "-",
                      err.n_fields ? err.fields[0].description : "-");
        check_output(name, m, output);
    } else {
        ck_assert_msg(m == NULL, "%s: accepted, expected an error", name);
        check_error(name, &err, error);
    }
    arena_free(a);
    free(msg_name);
    free(input);
    free(deny_text);
    free(output);
    free(error);
}
END_TEST

START_TEST(test_json_pb_round_trips_a_packed_message)
{
    /* What a service answers (a packed message unpacked by protobuf-c) renders
     * with the same rules: every field present, enums by name. */
    Shop__Product__V1__Product p = SHOP__PRODUCT__V1__PRODUCT__INIT;
    p.id = "id-1";
    p.sku = "SKU-1";
    p.price_cents = 1999;
    p.active = 1;
    size_t n = protobuf_c_message_get_packed_size(&p.base);
    uint8_t buf[256];
    protobuf_c_message_pack(&p.base, buf);
    arena_t *a = arena_new(0);
    ProtobufCMessage *u = protobuf_c_message_unpack(&shop__product__v1__product__descriptor,
                                                    arena_protobuf_allocator(a), n, buf);
    ck_assert_ptr_nonnull(u);
    json_t *j = json_pb_to_json(u);
    ck_assert_str_eq(json_string_value(json_object_get(j, "sku")), "SKU-1");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "price_cents")), 1999);
    ck_assert(json_is_true(json_object_get(j, "active")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "description")), "");
    ck_assert_uint_eq(json_object_size(j), 9);
    json_decref(j);
    arena_free(a);
}
END_TEST

START_TEST(test_json_pb_renders_a_string_that_is_not_utf8)
{
    /* protobuf-c does not check that a service's string is UTF-8; rendering such an
     * answer used to abort the gateway (jansson refuses the string; found by
     * tests/fuzz/fuzz_json_pb, tests/fuzz/regressions/json_pb). */
    Shop__Product__V1__Product p = SHOP__PRODUCT__V1__PRODUCT__INIT;
    p.name = "Mug \xd0\xc7!";
    p.description = "caf\xc3";
    json_t *j = json_pb_to_json(&p.base);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")),
                     "Mug \xef\xbf\xbd\xef\xbf\xbd!");
    ck_assert_str_eq(json_string_value(json_object_get(j, "description")), "caf\xef\xbf\xbd");
    ck_assert_str_eq(json_string_value(json_object_get(j, "sku")), "");
    json_decref(j);
}
END_TEST

START_TEST(test_json_pb_enum_name_strips_the_type_prefix)
{
    char n[32];
    ck_assert(json_pb_enum_name(&shop__user__v1__role__descriptor, SHOP__USER__V1__ROLE__ROLE_ADMIN,
                                n, sizeof(n)));
    ck_assert_str_eq(n, "admin");
    ck_assert(json_pb_enum_name(&shop__user__v1__ledger_entry_kind__descriptor, 3, n, sizeof(n)));
    ck_assert_str_eq(n, "refund");
    ck_assert(!json_pb_enum_name(&shop__user__v1__role__descriptor, 0, n, sizeof(n)));
    ck_assert(!json_pb_enum_name(&shop__user__v1__role__descriptor, 99, n, sizeof(n)));
}
END_TEST

static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void list_cases(void)
{
    DIR *d = opendir(JSON_PB_CASES);
    if (d == NULL) {
        fprintf(stderr, "cannot open %s\n", JSON_PB_CASES);
        exit(EXIT_FAILURE);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n_cases < MAX_CASES) {
        if (e->d_name[0] != '.')
            case_names[n_cases++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(case_names, (size_t)n_cases, sizeof(char *), cmp_names);
}

int main(void)
{
    list_cases();
    if (n_cases < 10) {
        fprintf(stderr, "only %d cases under %s\n", n_cases, JSON_PB_CASES);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("json_pb");
    TCase *tc = check_case(s, "cases", 10);
    tcase_add_loop_test(tc, test_json_pb_case_maps_as_its_files_say, 0, n_cases);
    tc = check_case(s, "render", 10);
    tcase_add_test(tc, test_json_pb_round_trips_a_packed_message);
    tcase_add_test(tc, test_json_pb_renders_a_string_that_is_not_utf8);
    tcase_add_test(tc, test_json_pb_enum_name_strips_the_type_prefix);
    int rc = check_run(s, CK_FORK_GETENV);
    for (int i = 0; i < n_cases; i++)
        free(case_names[i]);
    return rc;
}
