/*
 * span: the spans of a trace (docs/observability.md "Traces"). A span is one unit of
 * work of one hop — an HTTP request served, an RPC made or served, a saga event
 * handled, an outbox row published, a database transaction — with a trace context
 * (trace.h) of its own: the same trace id as its parent, a new span id. What a hop
 * sends onward as traceparent is the context of the span that made the call or the
 * publish (span_traceparent), so the receiver's span has that span as parent.
 *
 *   span_t s;
 *   span_start(&s, SPAN_CLIENT, "shop.product.v1.ProductService/GetProduct",
 *              incoming_traceparent);
 *   span_set_str(&s, "rpc.system", "grpc");
 *   ... send span_traceparent(&s) as the next hop's traceparent ...
 *   if (failed)
 *       span_fail(&s, "deadline exceeded");
 *   span_end(&s);
 *
 * A span_t is a fixed-size record the caller embeds (on its stack, in its request
 * or call struct): recording allocates nothing. span_end copies a sampled span into
 * the exporter's bounded queue (otel.h), which encodes and sends it on its own
 * thread. A span that is not sampled (the sampler said no, or export is off) is
 * only a context: span_start draws a span id and formats its traceparent, every
 * other call returns at its first branch, nothing is queued.
 *
 * Keys of attributes are borrowed (use string literals); string values are copied
 * and cut to SPAN_VALUE_MAX - 1 bytes; a span keeps at most SPAN_ATTRS_MAX
 * attributes (more are counted as dropped). A span_t belongs to one thread at a
 * time; the functions are thread-safe across different spans.
 */
#ifndef COMMON_SPAN_H
#define COMMON_SPAN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/trace.h"

/* OTLP's SpanKind values. */
typedef enum span_kind {
    SPAN_INTERNAL = 1,
    SPAN_SERVER = 2,
    SPAN_CLIENT = 3,
    SPAN_PRODUCER = 4,
    SPAN_CONSUMER = 5,
} span_kind_t;

#define SPAN_NAME_MAX  96
#define SPAN_VALUE_MAX 64
#define SPAN_ATTRS_MAX 8

typedef struct span_attr {
    const char *key; /* borrowed */
    bool is_int;
    int64_t i;
    char s[SPAN_VALUE_MAX];
} span_attr_t;

typedef struct span {
    /* public, read-only */
    trace_ctx_t ctx; /* this span's trace id, span id and flags */
    /* private */
    char traceparent[TRACE_PARENT_LEN + 1];
    bool recording;
    bool error;
    uint8_t kind;
    uint8_t n_attrs;
    uint8_t dropped;
    char parent_id[TRACE_SPAN_ID_LEN + 1]; /* "" for a root */
    int64_t start_ns, end_ns;              /* Unix epoch */
    char name[SPAN_NAME_MAX];
    char status_msg[SPAN_VALUE_MAX];
    span_attr_t attrs[SPAN_ATTRS_MAX];
} span_t;

/* span_start: starts s as a child of `parent` (a traceparent; NULL or invalid:
 * the root of a new trace). The sampler (otel.h, OTEL_TRACES_SAMPLER) decides
 * whether it is sampled; that decision is the sampled flag of s's context, which
 * downstream hops follow. name may be NULL (span_set_namef later). */
void span_start(span_t *s, span_kind_t kind, const char *name, const char *parent);

/* span_traceparent: the traceparent the next hop gets from s (s's own context),
 * valid as long as s. */
const char *span_traceparent(const span_t *s);

/* span_recording: true when s is sampled and will be exported (to skip building
 * attribute values nobody will see). */
bool span_recording(const span_t *s);

/* span_set_namef: the span's name, formatted (cut to SPAN_NAME_MAX - 1 bytes). */
void span_set_namef(span_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* span_set_str / span_set_int: adds an attribute (value NULL: nothing added). */
void span_set_str(span_t *s, const char *key, const char *value);
void span_set_int(span_t *s, const char *key, int64_t value);

/* span_fail: status ERROR with the message (cut to SPAN_VALUE_MAX - 1 bytes). */
void span_fail(span_t *s, const char *msg);

/* span_end: ends s and queues it for export when it is recording. s may then be
 * reused or dropped; ending twice queues once. */
void span_end(span_t *s);

/* span_current_set: the span the calling thread works for (a handler's SERVER or
 * CONSUMER span), so that code below it (db_txn) can start children without being
 * handed it; NULL clears. Returns the previous one. Borrowed: clear it before s
 * goes away. */
const span_t *span_current_set(const span_t *s);

/* span_current: the calling thread's current span, or NULL. */
const span_t *span_current(void);

#endif
