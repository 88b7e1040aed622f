/*
 * otel: the sampler and the batch span processor with its OTLP/gRPC exporter
 * (otel.h).
 *
 * Ended spans are copied whole into a ring of fixed-size records under one mutex
 * (a memcpy: no allocation, no encoding on the request's thread); when the ring is
 * full the span is dropped and counted. One exporter thread takes up to a batch at
 * a time — when a batch is full or the schedule delay passed — encodes it into an
 * ExportTraceServiceRequest in an arena and sends it through rpc_channel_call with
 * the export timeout. A failed export drops its batch (counted): spans are not
 * worth more retries than the next batch's.
 */
#include "common/otel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/arena.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/rpc.h"
#include "common/uuid.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "otel_internal.h"

#define OTEL_RESOURCE_MAX 16 /* key=value pairs of OTEL_RESOURCE_ATTRIBUTES */
#define OTEL_STOP_TIMEOUT 5000
#define OTEL_SCOPE        "shop-fleet"
#define OTEL_ENDPOINT_MAX 256

#define F(field) offsetof(otel_cfg_t, field)
const cfg_entry_t otel_cfg_table[] = {
    {"OTEL_EXPORTER_OTLP_ENDPOINT", CFG_STR, 0, OTEL_ENDPOINT_MAX, "", F(endpoint),
     "OTLP/gRPC receiver of traces, http://host:port (empty: traces are not exported)"},
    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", CFG_STR, 0, OTEL_ENDPOINT_MAX, "", F(traces_endpoint),
     "the same for traces only; wins over OTEL_EXPORTER_OTLP_ENDPOINT"},
    {"OTEL_TRACES_EXPORTER", CFG_STR, 1, 16, "otlp", F(exporter), "otlp | none"},
    {"OTEL_TRACES_SAMPLER", CFG_STR, 1, 32, "parentbased_always_on", F(sampler),
     "always_on | always_off | traceidratio | parentbased_always_on | parentbased_always_off "
     "| parentbased_traceidratio"},
    {"OTEL_TRACES_SAMPLER_ARG", CFG_STR, 0, 32, "", F(sampler_arg),
     "sampling ratio of the *traceidratio samplers, 0..1 (empty: 1)"},
    {"OTEL_SERVICE_NAME", CFG_STR, 0, 128, "", F(service_name),
     "service.name of the spans (empty: the program's name)"},
    {"OTEL_RESOURCE_ATTRIBUTES", CFG_STR, 0, 1024, "", F(resource_attributes),
     "more resource attributes, key=value,..."},
    {"OTEL_BSP_MAX_QUEUE_SIZE", CFG_INT, 1, 1000000, "2048", F(max_queue),
     "spans waiting for export at most; more are dropped (otel_spans_dropped_total)"},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", CFG_INT, 1, 100000, "512", F(max_batch),
     "spans per export at most"},
    {"OTEL_BSP_SCHEDULE_DELAY", CFG_DURATION, 1, 3600000, "1000", F(schedule_delay_ms),
     "longest wait of a span before its batch is exported"},
    {"OTEL_BSP_EXPORT_TIMEOUT", CFG_DURATION, 1, 3600000, "10000", F(export_timeout_ms),
     "deadline of one export"},
};
#undef F
const size_t otel_cfg_n = sizeof(otel_cfg_table) / sizeof(otel_cfg_table[0]);

/* ---------------------------------------------------------------- sampler ---- */

typedef enum otel_root { OTEL_ON, OTEL_OFF, OTEL_RATIO } otel_root_t;

/* Set by otel_start before other threads record spans; read-only afterwards. */
static struct {
    bool parent_based;
    otel_root_t root;
    uint64_t threshold; /* OTEL_RATIO: sampled when the id's low 64 bits are below */
    bool all;           /* OTEL_RATIO with ratio 1 */
} otel_sampler = {.parent_based = true, .root = OTEL_ON};

/* The value of one lower-case hex digit of an id (trace.h validated it). */
static unsigned otel_nibble(char c)
{
    return (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
}

/* The TraceIdRatioBased rule: the trace id's last 8 bytes, as a number, below
 * ratio × 2^64, so every hop of a trace decides alike. */
static bool otel_ratio_says(const char *trace_id)
{
    if (otel_sampler.all)
        return true;
    uint64_t v = 0;
    for (int i = TRACE_ID_LEN - 16; i < TRACE_ID_LEN; i++)
        v = v << 4 | otel_nibble(trace_id[i]);
    return v < otel_sampler.threshold;
}

bool otel__sampled(const trace_ctx_t *parent, const char *trace_id)
{
    if (parent != NULL && otel_sampler.parent_based)
        return (parent->flags & TRACE_FLAG_SAMPLED) != 0;
    switch (otel_sampler.root) {
    case OTEL_ON:
        return true;
    case OTEL_OFF:
        return false;
    default:
        return otel_ratio_says(trace_id);
    }
}

/* ---------------------------------------------------------------- pipeline ---- */

typedef struct otel_kv {
    char *key, *value;
} otel_kv_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool running; /* spans are queued */
    bool stop;
    span_t *ring;
    size_t cap, head, count;
    span_t *out; /* the batch being exported (exporter thread only) */
    size_t batch;
    int64_t delay_ms, timeout_ms;
    pthread_t thread;
    rpc_channel_t *ch;
    otel_kv_t res[OTEL_RESOURCE_MAX + 3];
    size_t n_res;
    metrics_counter_t *dropped, *exported, *failed;
    bool failing; /* the last export failed (log the first failure and the recovery) */
} otel_p = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_bool otel_on;

bool otel__exporting(void)
{
    return atomic_load_explicit(&otel_on, memory_order_relaxed);
}

void otel__enqueue(const span_t *s)
{
    pthread_mutex_lock(&otel_p.lock);
    if (!otel_p.running) {
        pthread_mutex_unlock(&otel_p.lock);
        return;
    }
    if (otel_p.count == otel_p.cap) {
        pthread_mutex_unlock(&otel_p.lock);
        metrics_counter_add(otel_p.dropped, 1);
        return;
    }
    otel_p.ring[(otel_p.head + otel_p.count) % otel_p.cap] = *s;
    if (++otel_p.count == otel_p.batch)
        pthread_cond_signal(&otel_p.cond);
    pthread_mutex_unlock(&otel_p.lock);
}

/* ---------------------------------------------------------------- encoding ---- */

static ProtobufCBinaryData otel_id_bytes(arena_t *a, const char *hex)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = arena_alloc(a, n > 0 ? n : 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(otel_nibble(hex[2 * i]) << 4 | otel_nibble(hex[2 * i + 1]));
    return (ProtobufCBinaryData){.len = n, .data = b};
}

static Opentelemetry__Proto__Common__V1__KeyValue *otel_kv_str(arena_t *a, const char *key,
                                                               const char *value)
{
    Opentelemetry__Proto__Common__V1__KeyValue *kv = arena_alloc(a, sizeof(*kv));
    Opentelemetry__Proto__Common__V1__AnyValue *v = arena_alloc(a, sizeof(*v));
    opentelemetry__proto__common__v1__key_value__init(kv);
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)value;
    kv->key = (char *)key;
    kv->value = v;
    return kv;
}

static Opentelemetry__Proto__Common__V1__KeyValue *otel_kv_attr(arena_t *a, const span_attr_t *at)
{
    Opentelemetry__Proto__Common__V1__KeyValue *kv = otel_kv_str(a, at->key, at->s);
    if (at->is_int) {
        kv->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        kv->value->int_value = at->i;
    }
    return kv;
}

static Opentelemetry__Proto__Trace__V1__Span *otel_span_msg(arena_t *a, const span_t *s)
{
    Opentelemetry__Proto__Trace__V1__Span *m = arena_alloc(a, sizeof(*m));
    opentelemetry__proto__trace__v1__span__init(m);
    m->trace_id = otel_id_bytes(a, s->ctx.trace_id);
    m->span_id = otel_id_bytes(a, s->ctx.span_id);
    m->parent_span_id = otel_id_bytes(a, s->parent_id);
    m->name = (char *)s->name;
    m->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
    m->start_time_unix_nano = (uint64_t)s->start_ns;
    m->end_time_unix_nano = (uint64_t)s->end_ns;
    m->n_attributes = s->n_attrs;
    m->attributes = arena_calloc(a, s->n_attrs + 1u, sizeof(*m->attributes));
    for (size_t i = 0; i < s->n_attrs; i++)
        m->attributes[i] = otel_kv_attr(a, &s->attrs[i]);
    m->dropped_attributes_count = s->dropped;
    m->flags = s->ctx.flags;
    if (s->error) {
        Opentelemetry__Proto__Trace__V1__Status *st = arena_alloc(a, sizeof(*st));
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
        st->message = (char *)s->status_msg;
        m->status = st;
    }
    return m;
}

/* The request for spans[0, n), in a. */
static Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *
otel_request(arena_t *a, const span_t *spans, size_t n)
{
    Opentelemetry__Proto__Resource__V1__Resource *res = arena_alloc(a, sizeof(*res));
    opentelemetry__proto__resource__v1__resource__init(res);
    res->n_attributes = otel_p.n_res;
    res->attributes = arena_calloc(a, otel_p.n_res, sizeof(*res->attributes));
    for (size_t i = 0; i < otel_p.n_res; i++)
        res->attributes[i] = otel_kv_str(a, otel_p.res[i].key, otel_p.res[i].value);

    Opentelemetry__Proto__Common__V1__InstrumentationScope *scope = arena_alloc(a, sizeof(*scope));
    opentelemetry__proto__common__v1__instrumentation_scope__init(scope);
    scope->name = OTEL_SCOPE;
    scope->version = SHOP_VERSION;

    Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = arena_alloc(a, sizeof(*ss));
    opentelemetry__proto__trace__v1__scope_spans__init(ss);
    ss->scope = scope;
    ss->n_spans = n;
    ss->spans = arena_calloc(a, n, sizeof(*ss->spans));
    for (size_t i = 0; i < n; i++)
        ss->spans[i] = otel_span_msg(a, &spans[i]);

    Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = arena_alloc(a, sizeof(*rs));
    opentelemetry__proto__trace__v1__resource_spans__init(rs);
    rs->resource = res;
    rs->n_scope_spans = 1;
    rs->scope_spans = arena_alloc(a, sizeof(*rs->scope_spans));
    rs->scope_spans[0] = ss;

    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        arena_alloc(a, sizeof(*req));
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
    req->n_resource_spans = 1;
    req->resource_spans = arena_alloc(a, sizeof(*req->resource_spans));
    req->resource_spans[0] = rs;
    return req;
}

/* Sends spans[0, n); 0, or the negative code (the batch is then dropped). */
static int otel_export(const span_t *spans, size_t n, int64_t timeout_ms)
{
    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    ProtobufCMessage *resp = NULL;
    int rc = rpc_channel_call(
        otel_p.ch, &opentelemetry__proto__collector__trace__v1__trace_service__descriptor, "Export",
        &otel_request(a, spans, n)->base, a, &resp, NULL, 0, timeout_ms, &err);
    if (rc == 0) {
        metrics_counter_add(otel_p.exported, n);
        if (otel_p.failing)
            LOG_INFO("trace export recovered");
        otel_p.failing = false;
    } else {
        metrics_counter_add(otel_p.failed, n);
        if (!otel_p.failing)
            LOG_WARN("trace export failed, spans dropped until it recovers",
                     LOG_STR("error", err.msg), LOG_INT("spans", n));
        otel_p.failing = true;
    }
    arena_free(a);
    return rc;
}

static void *otel_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&otel_p.lock);
    struct timespec due = clock_mono_deadline(otel_p.delay_ms);
    for (;;) {
        while (!otel_p.stop && otel_p.count < otel_p.batch &&
               pthread_cond_timedwait(&otel_p.cond, &otel_p.lock, &due) == 0)
            ;
        if (otel_p.count == 0) {
            if (otel_p.stop)
                break;
            due = clock_mono_deadline(otel_p.delay_ms);
            continue;
        }
        size_t n = otel_p.count < otel_p.batch ? otel_p.count : otel_p.batch;
        for (size_t i = 0; i < n; i++)
            otel_p.out[i] = otel_p.ring[(otel_p.head + i) % otel_p.cap];
        otel_p.head = (otel_p.head + n) % otel_p.cap;
        otel_p.count -= n;
        bool stopping = otel_p.stop;
        pthread_mutex_unlock(&otel_p.lock);
        int64_t timeout = stopping && otel_p.timeout_ms > OTEL_STOP_TIMEOUT ? OTEL_STOP_TIMEOUT
                                                                            : otel_p.timeout_ms;
        int rc = otel_export(otel_p.out, n, timeout);
        pthread_mutex_lock(&otel_p.lock);
        if (rc != 0 && stopping) {
            /* Draining towards a receiver that is down: the rest would fail alike. */
            metrics_counter_add(otel_p.dropped, otel_p.count);
            otel_p.count = 0;
        }
        due = clock_mono_deadline(otel_p.delay_ms);
    }
    pthread_mutex_unlock(&otel_p.lock);
    return NULL;
}

/* ---------------------------------------------------------------- settings ---- */

static int otel_sampler_parse(const otel_cfg_t *c, err_t *err)
{
    static const struct {
        const char *name;
        bool parent_based;
        otel_root_t root;
    } samplers[] = {
        {"always_on", false, OTEL_ON},
        {"always_off", false, OTEL_OFF},
        {"traceidratio", false, OTEL_RATIO},
        {"parentbased_always_on", true, OTEL_ON},
        {"parentbased_always_off", true, OTEL_OFF},
        {"parentbased_traceidratio", true, OTEL_RATIO},
    };
    size_t i = 0;
    while (i < sizeof(samplers) / sizeof(samplers[0]) && strcmp(samplers[i].name, c->sampler) != 0)
        i++;
    if (i == sizeof(samplers) / sizeof(samplers[0]))
        return err_set(err, ERR_INVALID,
                       "OTEL_TRACES_SAMPLER: must be always_on, always_off, traceidratio, "
                       "parentbased_always_on, parentbased_always_off or "
                       "parentbased_traceidratio, got \"%s\"",
                       c->sampler);
    double ratio = 1.0;
    if (c->sampler_arg[0] != '\0') {
        char *end;
        ratio = strtod(c->sampler_arg, &end);
        if (*end != '\0' || !(ratio >= 0.0 && ratio <= 1.0))
            return err_set(err, ERR_INVALID,
                           "OTEL_TRACES_SAMPLER_ARG: must be a ratio from 0 to 1, got \"%s\"",
                           c->sampler_arg);
    }
    otel_sampler.parent_based = samplers[i].parent_based;
    otel_sampler.root = samplers[i].root;
    otel_sampler.all = ratio >= 1.0;
    otel_sampler.threshold =
        otel_sampler.all ? UINT64_MAX : (uint64_t)(ratio * 18446744073709551616.0);
    return 0;
}

/* The gRPC target of an endpoint: "http://host:port[/]" or "host:port". */
static int otel_target(const otel_cfg_t *c, char out[OTEL_ENDPOINT_MAX + 1], err_t *err)
{
    bool traces = c->traces_endpoint[0] != '\0';
    const char *name =
        traces ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" : "OTEL_EXPORTER_OTLP_ENDPOINT";
    const char *e = traces ? c->traces_endpoint : c->endpoint;
    if (strncmp(e, "https://", 8) == 0)
        return err_set(err, ERR_INVALID, "%s: https is not supported (no TLS towards the receiver)",
                       name);
    if (strncmp(e, "http://", 7) == 0)
        e += 7;
    snprintf(out, OTEL_ENDPOINT_MAX + 1, "%s", e);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
    const char *colon = strrchr(out, ':');
    if (n == 0 || strchr(out, '/') != NULL || colon == NULL || colon[1] == '\0')
        return err_set(err, ERR_INVALID, "%s: must be http://host:port, got \"%s\"", name,
                       traces ? c->traces_endpoint : c->endpoint);
    return 0;
}

static void otel_res_add(const char *key, size_t key_len, const char *value)
{
    otel_kv_t *kv = &otel_p.res[otel_p.n_res++];
    kv->key = common__xmalloc(key_len + 1);
    memcpy(kv->key, key, key_len);
    kv->key[key_len] = '\0';
    kv->value = common__xstrdup(value);
}

/* Resource attributes: OTEL_RESOURCE_ATTRIBUTES, then service.name,
 * service.instance.id and service.version unless it named them. */
static int otel_resource(const otel_cfg_t *c, const char *default_name, err_t *err)
{
    const char *name = NULL;
    char *copy = common__xstrdup(c->resource_attributes), *save = NULL;
    int rc = 0;
    for (char *e = strtok_r(copy, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(e, '=');
        if (eq == NULL || eq == e || otel_p.n_res == OTEL_RESOURCE_MAX) {
            rc = err_set(err, ERR_INVALID,
                         "OTEL_RESOURCE_ATTRIBUTES: must be at most %d key=value pairs, got \"%s\"",
                         OTEL_RESOURCE_MAX, c->resource_attributes);
            goto out;
        }
        otel_res_add(e, (size_t)(eq - e), eq + 1);
        if (strcmp(otel_p.res[otel_p.n_res - 1].key, "service.name") == 0)
            name = otel_p.res[otel_p.n_res - 1].value;
    }
    if (c->service_name[0] != '\0' || name == NULL)
        otel_res_add("service.name", 12, c->service_name[0] ? c->service_name : default_name);
    char id[UUID_STR_LEN];
    uuid_new(id);
    otel_res_add("service.instance.id", 19, id);
    otel_res_add("service.version", 15, SHOP_VERSION);
out:
    free(copy);
    return rc;
}

static void otel_res_free(void)
{
    for (size_t i = 0; i < otel_p.n_res; i++) {
        free(otel_p.res[i].key);
        free(otel_p.res[i].value);
    }
    otel_p.n_res = 0;
}

int otel_start(const otel_cfg_t *c, const char *default_name, err_t *err)
{
    char target[OTEL_ENDPOINT_MAX + 1];
    bool otlp = strcmp(c->exporter, "otlp") == 0;
    if (!otlp && strcmp(c->exporter, "none") != 0)
        return err_set(err, ERR_INVALID, "OTEL_TRACES_EXPORTER: must be otlp or none, got \"%s\"",
                       c->exporter);
    if (otel_sampler_parse(c, err) < 0)
        return err->code;
    otel_p.dropped = metrics_counter(
        "otel_spans_dropped_total", "spans not exported: the queue was full, or at shutdown", NULL);
    otel_p.exported =
        metrics_counter("otel_spans_exported_total", "spans sent to the receiver", NULL);
    otel_p.failed = metrics_counter("otel_spans_export_failed_total",
                                    "spans of exports that failed (dropped)", NULL);
    if (!otlp || (c->endpoint[0] == '\0' && c->traces_endpoint[0] == '\0'))
        return 0;
    if (otel_target(c, target, err) < 0 || otel_resource(c, default_name, err) < 0)
        goto fail;
    if (!(otel_p.ch = rpc_channel_new(target, NULL, err)))
        goto fail;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&otel_p.cond, &ca);
    pthread_condattr_destroy(&ca);
    otel_p.cap = (size_t)c->max_queue;
    otel_p.batch = (size_t)(c->max_batch < c->max_queue ? c->max_batch : c->max_queue);
    otel_p.ring = common__xcalloc(otel_p.cap, sizeof(span_t));
    otel_p.out = common__xcalloc(otel_p.batch, sizeof(span_t));
    otel_p.delay_ms = c->schedule_delay_ms;
    otel_p.timeout_ms = c->export_timeout_ms;
    otel_p.head = otel_p.count = 0;
    otel_p.stop = false;
    otel_p.running = true;
    if (pthread_create(&otel_p.thread, NULL, otel_main, NULL) != 0) {
        LOG_ERR("trace exporter thread not created");
        abort();
    }
    atomic_store(&otel_on, true);
    LOG_INFO("exporting traces", LOG_STR("endpoint", target), LOG_STR("sampler", c->sampler));
    return 0;
fail:
    otel_res_free();
    return err->code;
}

void otel_stop(void)
{
    pthread_mutex_lock(&otel_p.lock);
    bool running = otel_p.running;
    atomic_store(&otel_on, false);
    otel_p.running = false;
    if (running) {
        otel_p.stop = true;
        pthread_cond_signal(&otel_p.cond);
    }
    pthread_mutex_unlock(&otel_p.lock);
    if (!running)
        return;
    pthread_join(otel_p.thread, NULL);
    rpc_channel_free(otel_p.ch);
    otel_p.ch = NULL;
    pthread_cond_destroy(&otel_p.cond);
    free(otel_p.ring);
    free(otel_p.out);
    otel_p.ring = otel_p.out = NULL;
    otel_res_free();
}
