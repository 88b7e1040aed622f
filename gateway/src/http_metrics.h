/*
 * http_metrics: the gateway's request metrics, from a closed set of labels and
 * without a lookup by name on the request path.
 *
 *   http_requests_total{route, method, status}   route: a pattern of the route table,
 *                                                or "unmatched"; method: GET, HEAD,
 *                                                POST, PUT, PATCH, DELETE, OPTIONS or
 *                                                "other"; status: the answer's code
 *                                                ("0": the client left first)
 *   http_request_duration_seconds{route}
 *   http_upstream_errors_total{service, code}    service: the gRPC service's short
 *                                                name; code: err_code_name
 *
 * Whatever a client sends, the number of series is bounded by the route table: an
 * unknown method or path never makes a series of its own. Every route's handle is
 * resolved when the route table is set up; a counter of a status is looked up in
 * the registry once, the first time it is needed (a series appears in /metrics
 * once it counts something), and kept in its slot; after that counting is an
 * atomic load and an atomic add. Thread-safe.
 */
#ifndef GATEWAY_HTTP_METRICS_H
#define GATEWAY_HTTP_METRICS_H

#include <stddef.h>

#include "router.h"

typedef struct http_metrics http_metrics_t;
typedef struct http_metrics_route http_metrics_route_t;

/* http_metrics_new: a handle per entry of routes[0..n) and per method of the
 * unmatched requests, their labels and histograms resolved now (routes is borrowed:
 * it must outlive the result). Owned; free with http_metrics_free. */
http_metrics_t *http_metrics_new(const router_route_t *routes, size_t n);
void http_metrics_free(http_metrics_t *m);

/* http_metrics_route: the handle a request counts on: route's, an entry of the
 * table, or (route NULL) the unmatched one of `method`, as sent. Borrowed from m. */
http_metrics_route_t *http_metrics_route(http_metrics_t *m, const router_route_t *route,
                                         const char *method);

/* http_metrics_request: one answered request on handle h. */
void http_metrics_request(http_metrics_route_t *h, int status, double secs);

/* http_metrics_upstream_error: one failed call to `service` (a descriptor's
 * short_name, a static string) with err code `code` (< 0). */
void http_metrics_upstream_error(http_metrics_t *m, const char *service, int code);

#endif
