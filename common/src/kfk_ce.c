/*
 * kfk_ce: the CloudEvents Kafka binding in binary mode (docs/architecture.md §4) as pure
 * functions over header lists, so the rules are unit-tested without a broker.
 *
 * Header values come from the network: each is bounded (KFK_CE_VALUE_MAX) and
 * checked for embedded NULs before anything is copied.
 */
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/kfk.h"
#include "common/trace.h"
#include "common/uuid.h"

enum { CE_ID, CE_TYPE, CE_SOURCE, CE_TIME, CE_SPECVERSION, CE_CONTENT_TYPE, CE_TRACEPARENT, CE_N };

static const char *const ce_names[CE_N] = {
    "ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "content-type", "traceparent",
};

/* Printable ASCII without spaces: what a type name or a URI reference may hold. */
static bool ce_token(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > KFK_CE_VALUE_MAX)
        return false;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return false;
    return true;
}

/* Checks one attribute's value by its header index; on failure writes why. */
static bool ce_attr_valid(int idx, const char *v, const char **why)
{
    int64_t us;
    switch (idx) {
    case CE_ID:
        *why = "not a UUID";
        return uuid_valid(v);
    case CE_TYPE:
    case CE_SOURCE:
        *why = "empty or not printable ASCII";
        return ce_token(v);
    case CE_TIME:
        *why = "not an RFC 3339 time";
        return strlen(v) <= KFK_CE_VALUE_MAX && clock_parse_rfc3339(v, &us) == 0;
    case CE_SPECVERSION:
        *why = "not " KFK_CE_SPECVERSION;
        return strcmp(v, KFK_CE_SPECVERSION) == 0;
    case CE_CONTENT_TYPE:
        *why = "not " KFK_CE_CONTENT_TYPE;
        return strcmp(v, KFK_CE_CONTENT_TYPE) == 0;
    default:
        *why = "not a W3C traceparent";
        return trace_parent_valid(v);
    }
}

static void ce_put(kfk_header_t *h, int idx, const char *v)
{
    *h = (kfk_header_t){.name = ce_names[idx], .value = v, .len = strlen(v)};
}

int kfk_ce_headers(const kfk_ce_t *ce, kfk_header_t out[KFK_CE_HEADERS_MAX], err_t *err)
{
    const char *attrs[] = {ce->id, ce->type, ce->source, ce->time};
    const char *why;
    for (int i = CE_ID; i <= CE_TIME; i++) {
        if (attrs[i] == NULL)
            return err_set(err, ERR_INVALID, "cloudevent attribute %s is missing", ce_names[i]);
        if (!ce_attr_valid(i, attrs[i], &why))
            return err_set(err, ERR_INVALID, "cloudevent attribute %s is invalid: %s", ce_names[i],
                           why);
    }
    int n = 0;
    for (int i = CE_ID; i <= CE_TIME; i++)
        ce_put(&out[n++], i, attrs[i]);
    ce_put(&out[n++], CE_SPECVERSION, KFK_CE_SPECVERSION);
    ce_put(&out[n++], CE_CONTENT_TYPE, KFK_CE_CONTENT_TYPE);
    if (trace_parent_valid(ce->traceparent))
        ce_put(&out[n++], CE_TRACEPARENT, ce->traceparent);
    return n;
}

/* The last header with each of our names (Kafka allows repeats). */
static void ce_pick(const kfk_header_t *headers, size_t n, const kfk_header_t *found[CE_N])
{
    for (int i = 0; i < CE_N; i++)
        found[i] = NULL;
    for (size_t j = 0; j < n; j++)
        for (int i = 0; i < CE_N; i++)
            if (headers[j].name && strcmp(headers[j].name, ce_names[i]) == 0)
                found[i] = &headers[j];
}

/* Copies a header value into the arena as a string, refusing oversized values and
 * embedded NULs (which would silently truncate it). NULL if refused. */
static const char *ce_value(const kfk_header_t *h, arena_t *a)
{
    if (h->len > KFK_CE_VALUE_MAX || (h->len > 0 && h->value == NULL) ||
        (h->len > 0 && memchr(h->value, '\0', h->len) != NULL))
        return NULL;
    return arena_strndup(a, h->len ? h->value : "", h->len);
}

int kfk_ce_parse(const kfk_header_t *headers, size_t n, arena_t *a, kfk_ce_t *out, err_t *err)
{
    const kfk_header_t *found[CE_N];
    const char *v[CE_N] = {0};
    const char *why;
    ce_pick(headers, n, found);
    for (int i = 0; i < CE_N; i++) {
        if (found[i] == NULL) {
            if (i == CE_TRACEPARENT)
                continue;
            return err_set(err, ERR_INVALID, "missing header %s", ce_names[i]);
        }
        v[i] = ce_value(found[i], a);
        if (v[i] == NULL || !ce_attr_valid(i, v[i], &why)) {
            if (i == CE_TRACEPARENT) {
                v[i] = NULL; /* W3C: an invalid parent starts a new trace */
                continue;
            }
            return err_set(err, ERR_INVALID, "invalid header %s: %s", ce_names[i],
                           v[i] == NULL ? "too long or holds a NUL byte" : why);
        }
    }
    *out = (kfk_ce_t){.id = v[CE_ID],
                      .type = v[CE_TYPE],
                      .source = v[CE_SOURCE],
                      .time = v[CE_TIME],
                      .traceparent = v[CE_TRACEPARENT]};
    return 0;
}
