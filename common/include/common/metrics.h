/*
 * metrics: a process-wide registry of counters, gauges and histograms, rendered in
 * the Prometheus text format (version 0.0.4) for /metrics.
 *
 * A metric is identified by name and label set. Look it up once (it is created on
 * first use) and keep the pointer; updates are lock-free atomics, safe from any
 * thread. Label values are escaped by the registry.
 *
 *   metrics_counter_t *c = metrics_counter("rpc_requests_total", "RPCs served",
 *                                          (const char *[]){"method", m, "code", "OK", NULL});
 *   metrics_counter_add(c, 1);
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics_counter metrics_counter_t;
typedef struct metrics_gauge metrics_gauge_t;
typedef struct metrics_histogram metrics_histogram_t;
typedef struct metrics_collector metrics_collector_t;
typedef struct metrics_sink metrics_sink_t;

/* Latency buckets in seconds, 100 µs to 10 s, for every *_duration_seconds metric. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_n;

/* labels: NULL, or alternating names and values ending with NULL. The registry copies
 * them. The returned pointer lives until the process exits. Thread-safe. A name used
 * with two kinds of metric aborts (a programming error). */
metrics_counter_t *metrics_counter(const char *name, const char *help, const char *const *labels);
metrics_gauge_t *metrics_gauge(const char *name, const char *help, const char *const *labels);
metrics_histogram_t *metrics_histogram(const char *name, const char *help,
                                       const char *const *labels, const double *buckets,
                                       size_t n_buckets);

void metrics_counter_add(metrics_counter_t *c, uint64_t n);
void metrics_gauge_set(metrics_gauge_t *g, double v);
void metrics_gauge_add(metrics_gauge_t *g, double delta);
void metrics_histogram_observe(metrics_histogram_t *h, double v);

/* metrics_gauge_fn: a gauge computed when /metrics is rendered (outbox lag, pool use).
 * fn runs on the rendering thread and must be thread-safe. */
void metrics_gauge_fn(const char *name, const char *help, const char *const *labels,
                      double (*fn)(void *ud), void *ud);

/* metrics_counter_fn: a counter computed when /metrics is rendered (process CPU time),
 * under the same rules as metrics_gauge_fn. */
void metrics_counter_fn(const char *name, const char *help, const char *const *labels,
                        double (*fn)(void *ud), void *ud);

/* metrics_collector_add: a gauge family whose series come and go (the partitions a
 * consumer owns right now). At each render fn writes the series it has with
 * metrics_sink_gauge; it runs under the registry lock, so it must be quick and must
 * not look up metrics. Several collectors may share a family. metrics_collector_remove
 * (NULL is a no-op) unregisters one before ud goes away; the family stays. */
metrics_collector_t *metrics_collector_add(const char *name, const char *help,
                                           void (*fn)(metrics_sink_t *sink, void *ud), void *ud);
void metrics_collector_remove(metrics_collector_t *c);
void metrics_sink_gauge(metrics_sink_t *sink, const char *const *labels, double v);

/* metrics_process_init: registers process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds (read from /proc/self
 * at render time), process_start_time_seconds and shop_build_info{program,version,commit}
 * = 1. Each program calls it once at start with its process name ("order-svc"). */
void metrics_process_init(const char *program);

/* metrics_render: the whole registry as Prometheus text, NUL-terminated, malloc'd;
 * the caller frees it. *len gets its length (without the NUL) if len is not NULL. */
char *metrics_render(size_t *len);

#endif
