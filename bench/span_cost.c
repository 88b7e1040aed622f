/*
 * bench_span_cost: the CPU of one span, on the recording thread and for the whole
 * process (the exporter's encoding and export included), sampled and not.
 *
 *   bench_span_cost ENDPOINT SAMPLER [N]    e.g. http://127.0.0.1:4317 always_on
 *
 * Records N (default 100000) SERVER spans with the four attributes of an RPC, as
 * rpc_server.c does, 100 at a time with a 2 ms pause (a loaded service's pace, so the
 * exporter keeps up instead of dropping), stops the pipeline (the last batch is
 * exported), and prints one JSON line: µs per span on the recording thread and in
 * the whole process, and the exporter's counters. bench/README.md ("Tracing cost")
 * has figures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/metrics.h"
#include "common/otel.h"
#include "common/span.h"

#define PARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static double cpu_s(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The value of an unlabelled counter in the /metrics text (-1: absent). */
static long counter(const char *text, const char *name)
{
    char key[96];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *at = strstr(text, key);
    return at != NULL ? strtol(at + strlen(key), NULL, 10) : -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_span_cost ENDPOINT SAMPLER [N]\n");
        return 2;
    }
    long n = argc > 3 ? strtol(argv[3], NULL, 10) : 100000;
    otel_cfg_t cfg = {.endpoint = argv[1],
                      .traces_endpoint = "",
                      .exporter = "otlp",
                      .sampler = argv[2],
                      .sampler_arg = "",
                      .service_name = "bench-span-cost",
                      .resource_attributes = "",
                      .max_queue = 2048,
                      .max_batch = 512,
                      .schedule_delay_ms = 200,
                      .export_timeout_ms = 10000};
    err_t err = ERR_INIT;
    if (n <= 0 || otel_start(&cfg, "bench-span-cost", &err) < 0) {
        fprintf(stderr, "bench_span_cost: %s\n", n <= 0 ? "N must be positive" : err.msg);
        return 2;
    }
    const struct timespec pause = {0, 2000000};
    double p0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID), t0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < n; i++) {
        span_t s;
        span_start(&s, SPAN_SERVER, "shop.order.v1.OrderService/GetOrder", PARENT);
        span_set_str(&s, "rpc.system", "grpc");
        span_set_str(&s, "rpc.service", "shop.order.v1.OrderService");
        span_set_str(&s, "rpc.method", "GetOrder");
        span_set_int(&s, "rpc.grpc.status_code", 0);
        span_end(&s);
        if (i % 100 == 99)
            nanosleep(&pause, NULL);
    }
    double t1 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    otel_stop();
    double p1 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    char *m = metrics_render(NULL);
    printf("{\"sampler\":\"%s\",\"spans\":%ld,\"thread_us_per_span\":%.3f,"
           "\"process_us_per_span\":%.3f,\"exported\":%ld,\"dropped\":%ld,\"failed\":%ld}\n",
           argv[2], n, (t1 - t0) / (double)n * 1e6, (p1 - p0) / (double)n * 1e6,
           counter(m, "otel_spans_exported_total"), counter(m, "otel_spans_dropped_total"),
           counter(m, "otel_spans_export_failed_total"));
    free(m);
    return 0;
}
