/*
 * http_metrics: slots of registry pointers (http_metrics.h).
 *
 * A slot is an atomic pointer, NULL until the series is first used; two threads
 * filling the same slot get the same pointer from the registry, so the race is
 * harmless. Requests: one handle per route entry (its method is the entry's) and
 * one per method slot for unmatched requests, each with its labels and histogram
 * resolved when the route table is set up and a row of status slots. Upstream errors: a
 * few rows keyed by the service name's address (the gateway calls three services).
 */
#include "http_metrics.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/metrics.h"

#define HTTP_METRICS_SERVICES 8
#define HTTP_METRICS_CODES    17 /* -ERR_UNAUTHENTICATED + 1 */

static const char *const http_metrics_methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                                   "PATCH", "DELETE", "OPTIONS", "other"};
#define HTTP_METRICS_N_METHODS (sizeof(http_metrics_methods) / sizeof(http_metrics_methods[0]))

/* Every status the gateway answers; the last slot takes any other. */
static const int http_metrics_statuses[] = {0,   200, 201, 202, 204, 304, 400, 401, 403,
                                            404, 405, 408, 409, 412, 413, 414, 415, 422,
                                            429, 431, 500, 501, 502, 503, 504};
/* The statuses of a server-side failure: created at zero for every route, so that the
 * 5xx-ratio alert (deploy/observability) sees the first one. */
static const int http_metrics_zero[] = {500, 502, 503, 504};
#define HTTP_METRICS_N_STATUSES                                                                    \
    (sizeof(http_metrics_statuses) / sizeof(http_metrics_statuses[0]) + 1)

/* One route's series: labels and histogram resolved in http_metrics_new, the 5xx
 * counters too, the other status counters on their first use. */
struct http_metrics_route {
    const char *route;  /* label: the pattern, or "unmatched" */
    const char *method; /* label: one of http_metrics_methods */
    metrics_histogram_t *duration;
    _Atomic(metrics_counter_t *) status[HTTP_METRICS_N_STATUSES];
};

typedef struct http_metrics_service {
    _Atomic(const char *) name;
    _Atomic(metrics_counter_t *) codes[HTTP_METRICS_CODES];
} http_metrics_service_t;

struct http_metrics {
    const router_route_t *routes;
    size_t n_routes;
    http_metrics_route_t *matched;                          /* [n_routes] */
    http_metrics_route_t unmatched[HTTP_METRICS_N_METHODS]; /* by method slot */
    http_metrics_service_t services[HTTP_METRICS_SERVICES];
};

static size_t http_metrics_method_slot(const char *method)
{
    for (size_t i = 0; i + 1 < HTTP_METRICS_N_METHODS; i++)
        if (strcmp(method, http_metrics_methods[i]) == 0)
            return i;
    return HTTP_METRICS_N_METHODS - 1;
}

static size_t http_metrics_status_slot(int status)
{
    size_t i = 0;
    while (i + 1 < HTTP_METRICS_N_STATUSES && http_metrics_statuses[i] != status)
        i++;
    return i;
}

/* The counter of h for status, looked up the first time. */
static metrics_counter_t *http_metrics_status_counter(http_metrics_route_t *h, int status)
{
    size_t sslot = http_metrics_status_slot(status);
    metrics_counter_t *c = atomic_load_explicit(&h->status[sslot], memory_order_acquire);
    if (c == NULL) {
        char code[16];
        if (sslot + 1 < HTTP_METRICS_N_STATUSES)
            snprintf(code, sizeof(code), "%d", status);
        else
            snprintf(code, sizeof(code), "other");
        c = metrics_counter(
            "http_requests_total", "HTTP requests by route and status",
            (const char *[]){"route", h->route, "method", h->method, "status", code, NULL});
        atomic_store_explicit(&h->status[sslot], c, memory_order_release);
    }
    return c;
}

static void http_metrics_route_init(http_metrics_route_t *h, const char *route, const char *method)
{
    h->route = route;
    h->method = http_metrics_methods[http_metrics_method_slot(method)];
    h->duration = metrics_histogram(
        "http_request_duration_seconds", "HTTP request latency by route",
        (const char *[]){"route", route, NULL}, metrics_latency_buckets, metrics_latency_buckets_n);
    for (size_t i = 0; i < sizeof(http_metrics_zero) / sizeof(http_metrics_zero[0]); i++)
        http_metrics_status_counter(h, http_metrics_zero[i]);
}

http_metrics_t *http_metrics_new(const router_route_t *routes, size_t n)
{
    http_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->matched = calloc(n ? n : 1, sizeof(*m->matched))) == NULL)
        abort();
    m->routes = routes;
    m->n_routes = n;
    for (size_t i = 0; i < n; i++)
        http_metrics_route_init(&m->matched[i], routes[i].pattern, routes[i].method);
    for (size_t i = 0; i < HTTP_METRICS_N_METHODS; i++)
        http_metrics_route_init(&m->unmatched[i], "unmatched", http_metrics_methods[i]);
    return m;
}

void http_metrics_free(http_metrics_t *m)
{
    if (m == NULL)
        return;
    free(m->matched);
    free(m);
}

http_metrics_route_t *http_metrics_route(http_metrics_t *m, const router_route_t *route,
                                         const char *method)
{
    size_t idx = route != NULL ? (size_t)(route - m->routes) : m->n_routes;
    return idx < m->n_routes ? &m->matched[idx] : &m->unmatched[http_metrics_method_slot(method)];
}

void http_metrics_request(http_metrics_route_t *h, int status, double secs)
{
    metrics_counter_add(http_metrics_status_counter(h, status), 1);
    metrics_histogram_observe(h->duration, secs);
}

/* The row of `service`, claimed on first use; NULL when every row is taken. */
static http_metrics_service_t *http_metrics_service(http_metrics_t *m, const char *service)
{
    for (size_t i = 0; i < HTTP_METRICS_SERVICES; i++) {
        http_metrics_service_t *s = &m->services[i];
        const char *name = atomic_load(&s->name);
        if (name == NULL) {
            const char *expected = NULL;
            if (atomic_compare_exchange_strong(&s->name, &expected, service))
                return s;
            name = expected;
        }
        if (name == service)
            return s;
    }
    return NULL;
}

void http_metrics_upstream_error(http_metrics_t *m, const char *service, int code)
{
    int idx = -code >= 0 && -code < HTTP_METRICS_CODES ? -code : -ERR_UNKNOWN;
    http_metrics_service_t *s = http_metrics_service(m, service);
    metrics_counter_t *c =
        s != NULL ? atomic_load_explicit(&s->codes[idx], memory_order_acquire) : NULL;
    if (c == NULL) {
        c = metrics_counter(
            "http_upstream_errors_total", "failed calls from the gateway to a service",
            (const char *[]){"service", service, "code", err_code_name(-idx), NULL});
        if (s != NULL)
            atomic_store_explicit(&s->codes[idx], c, memory_order_release);
    }
    metrics_counter_add(c, 1);
}
