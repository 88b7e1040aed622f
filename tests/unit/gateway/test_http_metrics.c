/*
 * http_metrics: every route's handle is resolved with the table, its 5xx series
 * exist at zero, a request counts on its route's series, and whatever a client sends maps to a closed label set.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/metrics.h"
#include "http_metrics.h"

static const router_route_t routes[] = {
    {"GET", "/t/items", NULL},
    {"POST", "/t/items/{id}", NULL},
};

/* True when the registry's text has a line starting with `prefix`. */
static bool rendered(const char *prefix)
{
    char *text = metrics_render(NULL);
    bool found = false;
    for (const char *l = text; l != NULL && *l != '\0' && !found;) {
        found = strncmp(l, prefix, strlen(prefix)) == 0;
        l = strchr(l, '\n');
        l = l != NULL ? l + 1 : NULL;
    }
    free(text);
    return found;
}

START_TEST(test_http_metrics_routes_are_resolved_with_the_table)
{
    http_metrics_t *m = http_metrics_new(routes, 2);
    ck_assert(rendered("http_request_duration_seconds_count{route=\"/t/items\"} 0"));
    ck_assert(rendered("http_request_duration_seconds_count{route=\"/t/items/{id}\"} 0"));
    /* The server-fault statuses exist at zero (an increase() alert sees the first one);
     * the others appear with their first request. */
    ck_assert(rendered("http_requests_total{method=\"GET\",route=\"/t/items\",status=\"500\"} 0"));
    ck_assert(rendered("http_requests_total{method=\"POST\",route=\"/t/items/{id}\","
                       "status=\"503\"} 0"));
    ck_assert(!rendered("http_requests_total{method=\"GET\",route=\"/t/items\",status=\"200\""));
    http_metrics_request(http_metrics_route(m, &routes[0], "GET"), 200, 0.01);
    http_metrics_request(http_metrics_route(m, &routes[0], "GET"), 200, 0.01);
    ck_assert(rendered("http_requests_total{method=\"GET\",route=\"/t/items\",status=\"200\"} 2"));
    ck_assert(rendered("http_request_duration_seconds_count{route=\"/t/items\"} 2"));
    http_metrics_free(m);
}
END_TEST

START_TEST(test_http_metrics_labels_come_from_a_closed_set)
{
    http_metrics_t *m = http_metrics_new(routes, 2);
    /* A matched route counts under its own method, whatever the spelling sent. */
    http_metrics_request(http_metrics_route(m, &routes[1], "post"), 299, 0.01);
    ck_assert(rendered("http_requests_total{method=\"POST\",route=\"/t/items/{id}\","
                       "status=\"other\"} 1"));
    http_metrics_request(http_metrics_route(m, NULL, "XYZZY"), 405, 0.01);
    http_metrics_request(http_metrics_route(m, NULL, "PROPFIND"), 405, 0.01);
    http_metrics_request(http_metrics_route(m, NULL, "DELETE"), 404, 0.01);
    ck_assert(
        rendered("http_requests_total{method=\"other\",route=\"unmatched\",status=\"405\"} 2"));
    ck_assert(
        rendered("http_requests_total{method=\"DELETE\",route=\"unmatched\",status=\"404\"} 1"));
    ck_assert(rendered("http_request_duration_seconds_count{route=\"unmatched\"} 3"));
    http_metrics_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http_metrics");
    TCase *tc = check_case(s, "http_metrics", 10);
    tcase_add_test(tc, test_http_metrics_routes_are_resolved_with_the_table);
    tcase_add_test(tc, test_http_metrics_labels_come_from_a_closed_set);
    return check_run(s, CK_FORK_GETENV);
}
