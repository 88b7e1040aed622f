/*
 * otel: the process's trace pipeline — sampler and OTLP/gRPC exporter of the spans
 * recorded through span.h (docs/observability.md "Traces").
 *
 * Settings are the OpenTelemetry specification's environment variables, declared
 * in otel_cfg_table (each program loads and prints it with its own table, so
 * --help lists them):
 *   OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
 *                            http://host:port of an OTLP/gRPC receiver; the second
 *                            wins. Empty (the default): nothing is exported.
 *   OTEL_TRACES_EXPORTER     otlp | none
 *   OTEL_TRACES_SAMPLER      always_on | always_off | traceidratio |
 *                            parentbased_always_on (default) | parentbased_always_off |
 *                            parentbased_traceidratio
 *   OTEL_TRACES_SAMPLER_ARG  the ratio for *traceidratio, 0..1 (default 1)
 *   OTEL_SERVICE_NAME        service.name (default: the program's name)
 *   OTEL_RESOURCE_ATTRIBUTES key=value,... added to the resource
 *   OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY,
 *   OTEL_BSP_EXPORT_TIMEOUT  the batch span processor's bounds
 *
 * One pipeline per process. Until otel_start (and after otel_stop) spans are only
 * contexts: sampled flags still follow the sampler, nothing is recorded.
 */
#ifndef COMMON_OTEL_H
#define COMMON_OTEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"

typedef struct otel_cfg {
    const char *endpoint;
    const char *traces_endpoint;
    const char *exporter;
    const char *sampler;
    const char *sampler_arg;
    const char *service_name;
    const char *resource_attributes;
    int64_t max_queue;
    int64_t max_batch;
    int64_t schedule_delay_ms;
    int64_t export_timeout_ms;
} otel_cfg_t;

/* The settings above, for cfg_load / cfg_usage_print into an otel_cfg_t. */
extern const cfg_entry_t otel_cfg_table[];
extern const size_t otel_cfg_n;

/* otel_start: checks the settings (ERR_INVALID naming the variable: the program
 * exits 2), installs the sampler and, when an endpoint is set and the exporter is
 * otlp, starts the exporter thread. default_name is service.name unless
 * OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says otherwise.
 * From main(), once, before other threads record spans (it creates a gRPC channel:
 * rpc.h's rule on the environment applies). Returns 0 or the negative code. */
int otel_start(const otel_cfg_t *cfg, const char *default_name, err_t *err);

/* otel_stop: exports what is queued (each batch bounded by the export timeout),
 * stops the thread and frees the pipeline; later spans are not recorded. For the
 * end of a drain (SIGTERM), after the work that records spans stopped. Idempotent. */
void otel_stop(void);

#endif
