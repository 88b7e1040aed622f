/*
 * otel_internal: what span.c needs from the pipeline (otel.c).
 */
#ifndef COMMON_OTEL_INTERNAL_H
#define COMMON_OTEL_INTERNAL_H

#include <stdbool.h>

#include "common/span.h"

/* otel__sampled: the sampler's decision for a new span of trace `trace_id` whose
 * parent is `parent` (NULL: a root). Thread-safe, allocation-free. */
bool otel__sampled(const trace_ctx_t *parent, const char *trace_id);

/* otel__exporting: true while the exporter runs (sampled spans are recorded). */
bool otel__exporting(void);

/* otel__enqueue: copies an ended span into the export queue, or counts it in
 * otel_spans_dropped_total when the queue is full. Never blocks on the network. */
void otel__enqueue(const span_t *s);

#endif
