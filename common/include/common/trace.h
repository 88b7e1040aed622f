/*
 * trace: the W3C trace context (https://www.w3.org/TR/trace-context/) as it travels
 * through the fleet: each hop's span (span.h) is a child of the context it was
 * called with, and its own context travels on as the "traceparent" gRPC metadata
 * entry (rpc.h) or Kafka header (kfk.h); every log line carries the trace id (log.h).
 *
 * A traceparent is "<version>-<trace-id>-<parent-id>-<flags>": 2, 32, 16 and 2
 * lower-case hex digits. Version 00 is exactly TRACE_PARENT_LEN bytes; a later
 * version may append "-..." (kept apart, as the specification asks); version ff,
 * an all-zero trace id or an all-zero parent id is invalid. An invalid traceparent
 * is treated as absent: the next hop starts a new trace.
 *
 * Pure functions over caller-owned buffers, thread-safe; trace_new and trace_child
 * draw random ids from the kernel (getrandom) and abort if it fails.
 */
#ifndef COMMON_TRACE_H
#define COMMON_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#define TRACE_ID_LEN       32 /* hex digits of a trace id */
#define TRACE_SPAN_ID_LEN  16 /* hex digits of a parent (span) id */
#define TRACE_PARENT_LEN   55 /* "00-<32 hex>-<16 hex>-<2 hex>" */
#define TRACE_FLAG_SAMPLED 0x01

/* One hop's trace context, NUL-terminated lower-case hex. */
typedef struct trace_ctx {
    char trace_id[TRACE_ID_LEN + 1];
    char span_id[TRACE_SPAN_ID_LEN + 1];
    uint8_t flags;
} trace_ctx_t;

/* trace_parent_valid: true for a traceparent as described above (NULL is not). */
bool trace_parent_valid(const char *s);

/* trace_parse: fills *out from a valid traceparent and returns true; false (and
 * *out untouched) for NULL or an invalid one. */
bool trace_parse(const char *traceparent, trace_ctx_t *out);

/* trace_new: a new trace: random trace and span ids, flags TRACE_FLAG_SAMPLED. */
void trace_new(trace_ctx_t *out);

/* trace_child: the context for the next hop: parent's trace id and flags with a
 * new random span id. out may be parent. */
void trace_child(const trace_ctx_t *parent, trace_ctx_t *out);

/* trace_format: the version-00 traceparent of t into out. */
void trace_format(const trace_ctx_t *t, char out[TRACE_PARENT_LEN + 1]);

/* trace_id_of: the trace id of a valid traceparent into out, for log lines, and
 * true; false with out = "" when traceparent is NULL or invalid. */
bool trace_id_of(const char *traceparent, char out[TRACE_ID_LEN + 1]);

#endif
