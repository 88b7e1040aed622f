/*
 * fuzz_router: router_match (gateway/src/router.c) over the gateway's real route
 * table (routes_table) with an arbitrary method and path.
 *
 * Input: the method, one '\n', the path (each cut at a NUL, as MHD hands them over).
 * Without a '\n' the whole input is the path and the method is "GET".
 *
 * Invariants: the answer is 200, 404 or 405; 200 names a route of this method
 * whose captures are NUL-terminated, shorter than ROUTER_PARAM_MAX and found again
 * by router_param; 405 lists, in Allow, only methods of the table, never the
 * request's own; 404 leaves Allow empty.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "router.h"
#include "routes.h"

static void fail(const char *what, const char *method, const char *path)
{
    fprintf(stderr, "fuzz_router: %s (method \"%.100s\", path \"%.300s\")\n", what, method, path);
    abort();
}

static bool known_method(const router_route_t *routes, size_t n, const char *m, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(routes[i].method) == len && memcmp(routes[i].method, m, len) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    arena_t *a = arena_new(0);
    const char *nl = memchr(data, '\n', size);
    const char *method = "GET", *path;
    if (nl != NULL) {
        method = arena_strndup(a, (const char *)data, (size_t)(nl - (const char *)data));
        path = arena_strndup(a, nl + 1, size - (size_t)(nl + 1 - (const char *)data));
    } else {
        path = arena_strndup(a, (const char *)data, size);
    }
    size_t n;
    const router_route_t *routes = routes_table(&n);
    const router_route_t *route = NULL;
    router_params_t params;
    char allow[ROUTER_ALLOW_MAX];
    memset(allow, 'x', sizeof(allow));
    int rc = router_match(routes, n, method, path, &route, &params, allow);
    if (memchr(allow, '\0', sizeof(allow)) == NULL)
        fail("Allow is not NUL-terminated", method, path);
    switch (rc) {
    case 200:
        if (route == NULL || strcmp(route->method, method) != 0)
            fail("200 with a route of another method", method, path);
        if (params.n > ROUTER_MAX_PARAMS)
            fail("more captures than ROUTER_MAX_PARAMS", method, path);
        for (size_t i = 0; i < params.n; i++) {
            size_t len = strnlen(params.values[i], ROUTER_PARAM_MAX);
            if (len == 0 || len == ROUTER_PARAM_MAX || strstr(path, params.values[i]) == NULL)
                fail("a capture is empty, unterminated or not from the path", method, path);
            char name[ROUTER_PARAM_MAX];
            snprintf(name, sizeof(name), "%.*s", (int)params.name_lens[i], params.names[i]);
            if (router_param(&params, name) == NULL)
                fail("router_param does not find a capture", method, path);
        }
        break;
    case 405:
        for (const char *m = allow; *m != '\0';) {
            size_t len = strcspn(m, ",");
            if (!known_method(routes, n, m, len) ||
                (strlen(method) == len && memcmp(m, method, len) == 0))
                fail("Allow names a method it should not", method, path);
            m += len;
            if (*m == ',')
                m += 2; /* ", " */
        }
        if (allow[0] == '\0')
            fail("405 with an empty Allow", method, path);
        break;
    case 404:
        if (allow[0] != '\0')
            fail("404 with an Allow", method, path);
        break;
    default:
        fail("an answer other than 200, 404, 405", method, path);
    }
    arena_free(a);
    return 0;
}
