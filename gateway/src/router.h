/*
 * router: method + path patterns to route entries.
 *
 * A pattern is a path of literal segments and {name} captures, e.g.
 * "/api/v1/orders/{id}/cancel". A capture matches one non-empty segment. Paths
 * match exactly (no trailing slash folding, no dot segments). When the path
 * matches some route but not with this method, the answer is 405 with the
 * methods that would have matched (for the Allow header); when it matches none,
 * 404.
 */
#ifndef GATEWAY_ROUTER_H
#define GATEWAY_ROUTER_H

#include <stddef.h>

#define ROUTER_MAX_PARAMS 4
#define ROUTER_PARAM_MAX  128
#define ROUTER_ALLOW_MAX  64

typedef struct router_params {
    size_t n;
    const char *names[ROUTER_MAX_PARAMS]; /* borrowed from the pattern, not NUL-ended */
    size_t name_lens[ROUTER_MAX_PARAMS];
    char values[ROUTER_MAX_PARAMS][ROUTER_PARAM_MAX];
} router_params_t;

/* One route: what the table says; `data` is the caller's (handler, auth, ...). */
typedef struct router_route {
    const char *method;
    const char *pattern;
    const void *data;
} router_route_t;

/* router_match: the route of routes[0..n) that matches method and path.
 * Returns 200 and *out, *params; 405 with `allow` ("GET, PATCH"); or 404.
 * Thread-safe (the table is only read). */
int router_match(const router_route_t *routes, size_t n, const char *method, const char *path,
                 const router_route_t **out, router_params_t *params, char allow[ROUTER_ALLOW_MAX]);

/* router_param: the value captured for {name}, or NULL. */
const char *router_param(const router_params_t *params, const char *name);

#endif
