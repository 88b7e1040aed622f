/*
 * router: method + path patterns with {captures}; 404 and 405 with Allow.
 */
#include <string.h>

#include "check_util.h"
#include "router.h"
#include "routes.h"

static const router_route_t table[] = {
    {"GET", "/api/v1/orders", "list"},
    {"POST", "/api/v1/orders", "create"},
    {"GET", "/api/v1/orders/{id}", "get"},
    {"POST", "/api/v1/orders/{id}/cancel", "cancel"},
    {"PUT", "/api/v1/products/{id}/stock", "stock"},
};
#define N (sizeof(table) / sizeof(table[0]))

START_TEST(test_router_matches_literals_and_captures)
{
    const router_route_t *r;
    router_params_t p;
    char allow[ROUTER_ALLOW_MAX];
    ck_assert_int_eq(router_match(table, N, "POST", "/api/v1/orders", &r, &p, allow), 200);
    ck_assert_str_eq(r->data, "create");
    ck_assert_int_eq(router_match(table, N, "POST", "/api/v1/orders/abc-1/cancel", &r, &p, allow),
                     200);
    ck_assert_str_eq(r->data, "cancel");
    ck_assert_str_eq(router_param(&p, "id"), "abc-1");
    ck_assert_ptr_null(router_param(&p, "other"));
}
END_TEST

START_TEST(test_router_answers_404_for_unknown_paths)
{
    const router_route_t *r;
    router_params_t p;
    char allow[ROUTER_ALLOW_MAX];
    static const char *const paths[] = {"/api/v1/order",
                                        "/api/v1/orders/",
                                        "/api/v1/orders//cancel",
                                        "/api/v1/orders/1/cancel/x",
                                        "/",
                                        "",
                                        "/api/v1"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        ck_assert_msg(router_match(table, N, "GET", paths[i], &r, &p, allow) == 404, "%s",
                      paths[i]);
}
END_TEST

START_TEST(test_router_answers_405_with_allow)
{
    const router_route_t *r;
    router_params_t p;
    char allow[ROUTER_ALLOW_MAX];
    ck_assert_int_eq(router_match(table, N, "DELETE", "/api/v1/orders", &r, &p, allow), 405);
    ck_assert_str_eq(allow, "GET, POST");
    ck_assert_int_eq(router_match(table, N, "GET", "/api/v1/products/x/stock", &r, &p, allow), 405);
    ck_assert_str_eq(allow, "PUT");
}
END_TEST

START_TEST(test_router_table_of_the_api_has_unique_routes)
{
    size_t n;
    const router_route_t *t = routes_table(&n);
    ck_assert_uint_ge(n, 24);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++)
            ck_assert_msg(strcmp(t[i].method, t[j].method) != 0 ||
                              strcmp(t[i].pattern, t[j].pattern) != 0,
                          "%s %s twice", t[i].method, t[i].pattern);
        const http_route_t *h = t[i].data;
        ck_assert_ptr_nonnull(h->handler);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = check_case(s, "router", 10);
    tcase_add_test(tc, test_router_matches_literals_and_captures);
    tcase_add_test(tc, test_router_answers_404_for_unknown_paths);
    tcase_add_test(tc, test_router_answers_405_with_allow);
    tcase_add_test(tc, test_router_table_of_the_api_has_unique_routes);
    return check_run(s, CK_FORK_GETENV);
}
