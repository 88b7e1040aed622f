/*
 * span: recording spans into fixed-size records (span.h); the pipeline behind
 * span_end is otel.c.
 */
#include "common/span.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "otel_internal.h"

static _Thread_local const span_t *span_cur;

static int64_t span_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void span_start(span_t *s, span_kind_t kind, const char *name, const char *parent)
{
    trace_ctx_t p;
    bool has_parent = trace_parse(parent, &p);
    if (has_parent)
        trace_child(&p, &s->ctx);
    else
        trace_new(&s->ctx);
    bool sampled = otel__sampled(has_parent ? &p : NULL, s->ctx.trace_id);
    s->ctx.flags =
        (uint8_t)((s->ctx.flags & ~TRACE_FLAG_SAMPLED) | (sampled ? TRACE_FLAG_SAMPLED : 0));
    trace_format(&s->ctx, s->traceparent);
    s->recording = sampled && otel__exporting();
    if (!s->recording)
        return;
    s->kind = (uint8_t)kind;
    s->error = false;
    s->n_attrs = 0;
    s->dropped = 0;
    s->status_msg[0] = '\0';
    if (has_parent)
        memcpy(s->parent_id, p.span_id, sizeof(s->parent_id));
    else
        s->parent_id[0] = '\0';
    snprintf(s->name, sizeof(s->name), "%s", name ? name : "");
    s->start_ns = span_now_ns();
}

const char *span_traceparent(const span_t *s)
{
    return s->traceparent;
}

bool span_recording(const span_t *s)
{
    return s->recording;
}

void span_set_namef(span_t *s, const char *fmt, ...)
{
    if (!s->recording)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof(s->name), fmt, ap);
    va_end(ap);
}

/* The next attribute slot, or NULL (counted as dropped) when all are taken. */
static span_attr_t *span_attr_next(span_t *s, const char *key)
{
    if (s->n_attrs == SPAN_ATTRS_MAX) {
        s->dropped++;
        return NULL;
    }
    span_attr_t *a = &s->attrs[s->n_attrs++];
    a->key = key;
    return a;
}

void span_set_str(span_t *s, const char *key, const char *value)
{
    if (!s->recording || value == NULL)
        return;
    span_attr_t *a = span_attr_next(s, key);
    if (a == NULL)
        return;
    a->is_int = false;
    snprintf(a->s, sizeof(a->s), "%s", value);
}

void span_set_int(span_t *s, const char *key, int64_t value)
{
    if (!s->recording)
        return;
    span_attr_t *a = span_attr_next(s, key);
    if (a == NULL)
        return;
    a->is_int = true;
    a->i = value;
}

void span_fail(span_t *s, const char *msg)
{
    if (!s->recording)
        return;
    s->error = true;
    snprintf(s->status_msg, sizeof(s->status_msg), "%s", msg ? msg : "");
}

void span_end(span_t *s)
{
    if (!s->recording)
        return;
    s->recording = false;
    s->end_ns = span_now_ns();
    otel__enqueue(s);
}

const span_t *span_current_set(const span_t *s)
{
    const span_t *prev = span_cur;
    span_cur = s;
    return prev;
}

const span_t *span_current(void)
{
    return span_cur;
}
