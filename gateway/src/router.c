/*
 * router: segment-by-segment matching over a small table (router.h). The table
 * has about twenty entries, so a linear scan beats any index.
 */
#include "router.h"

#include <stdbool.h>
#include <string.h>

/* Matches path against pattern, filling params; false on the first difference. */
static bool router_match_one(const char *pattern, const char *path, router_params_t *params)
{
    params->n = 0;
    const char *p = pattern, *s = path;
    while (*p != '\0' && *s != '\0') {
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        const char *pe = strchr(p, '/'), *se = strchr(s, '/');
        size_t plen = pe != NULL ? (size_t)(pe - p) : strlen(p);
        size_t slen = se != NULL ? (size_t)(se - s) : strlen(s);
        if (plen > 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (slen == 0 || slen >= ROUTER_PARAM_MAX || params->n == ROUTER_MAX_PARAMS)
                return false;
            params->names[params->n] = p + 1;
            params->name_lens[params->n] = plen - 2;
            memcpy(params->values[params->n], s, slen);
            params->values[params->n][slen] = '\0';
            params->n++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return false;
        }
        p += plen;
        s += slen;
    }
    return *p == '\0' && *s == '\0';
}

int router_match(const router_route_t *routes, size_t n, const char *method, const char *path,
                 const router_route_t **out, router_params_t *params, char allow[ROUTER_ALLOW_MAX])
{
    allow[0] = '\0';
    router_params_t tmp;
    for (size_t i = 0; i < n; i++) {
        if (!router_match_one(routes[i].pattern, path, &tmp))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            *out = &routes[i];
            *params = tmp;
            return 200;
        }
        size_t len = strlen(allow);
        if (strstr(allow, routes[i].method) == NULL &&
            len + strlen(routes[i].method) + 3 < ROUTER_ALLOW_MAX) {
            if (len > 0)
                strcat(allow, ", ");
            strcat(allow, routes[i].method);
        }
    }
    return allow[0] != '\0' ? 405 : 404;
}

const char *router_param(const router_params_t *params, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < params->n; i++) {
        if (params->name_lens[i] == len && memcmp(params->names[i], name, len) == 0)
            return params->values[i];
    }
    return NULL;
}
