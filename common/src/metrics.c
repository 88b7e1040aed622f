/*
 * metrics: the registry behind metrics.h and its Prometheus text rendering.
 *
 * Families (one per metric name) and their series live in lists guarded by one
 * mutex; the lock is taken on lookup, creation and rendering only. Values are C11
 * atomics updated without the lock: a gauge's double is kept as its bit pattern in a
 * uint64_t and changed with compare-and-swap. A histogram keeps one counter per
 * bucket (not cumulative, so an observation touches one bucket) and its sum; the
 * cumulative counts and _count are added up at render time, which keeps _count equal
 * to the +Inf bucket in every scrape.
 *
 * Computed gauges and counters, and collectors (families whose series come and go,
 * written at render time), run under the registry lock while rendering, so they
 * must not themselves look up metrics.
 *
 * Everything allocated here lives until the process exits, by contract.
 */
#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"

const double metrics_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                          1,      2.5,     5,      10};
const size_t metrics_latency_buckets_n =
    sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

#define METRICS_DOUBLE_LEN 32

typedef enum { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM } metrics_kind_t;

static const char *const metrics_kind_names[] = {"counter", "gauge", "histogram"};

typedef struct metrics_series {
    struct metrics_series *next;
    char *labels; /* rendered and escaped: `a="x",b="y"`, or "" */
} metrics_series_t;

/* The function of a computed counter or gauge; guarded by the registry lock. */
typedef struct metrics_computed {
    double (*fn)(void *ud); /* NULL: the stored value is rendered */
    void *ud;
} metrics_computed_t;

struct metrics_counter {
    metrics_series_t s;
    _Atomic uint64_t value;
    metrics_computed_t computed;
};

struct metrics_gauge {
    metrics_series_t s;
    _Atomic uint64_t bits; /* the double's bit pattern */
    metrics_computed_t computed;
};

struct metrics_histogram {
    metrics_series_t s;
    double *bounds; /* strictly increasing upper bounds; +Inf is implied */
    size_t n_bounds;
    _Atomic uint64_t *counts; /* n_bounds + 1: one per bucket, the last is +Inf */
    _Atomic uint64_t sum_bits;
};

struct metrics_collector {
    struct metrics_collector *next;
    struct metrics_family *fam;
    void (*fn)(metrics_sink_t *sink, void *ud);
    void *ud;
};

typedef struct metrics_family {
    struct metrics_family *next;
    char *name;
    char *help;
    metrics_kind_t kind;
    metrics_series_t *first, *last;
    metrics_collector_t *collectors;
} metrics_family_t;

/* What a collector writes its series to while the family is rendered. */
struct metrics_sink {
    FILE *f;
    const metrics_family_t *fam;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static metrics_family_t *metrics_first, *metrics_last;

_Noreturn static void metrics_misuse(const char *what, const char *name)
{
    fprintf(stderr, "fatal: metrics: %s: %s\n", what, name);
    fflush(stderr);
    abort();
}

static uint64_t metrics_d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double metrics_u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static bool metrics_name_ok(const char *s, bool colon_ok)
{
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        bool alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return s[0] != '\0';
}

static FILE *metrics_memstream(char **buf, size_t *len)
{
    FILE *f = open_memstream(buf, len);
    if (f == NULL)
        common__oom(BUFSIZ);
    return f;
}

static void metrics_memstream_close(FILE *f)
{
    if (fclose(f) != 0)
        common__oom(BUFSIZ);
}

/* A label value or help text with \, " (label values only) and newline escaped. */
static void metrics_put_escaped(FILE *f, const char *s, bool quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (quote && *s == '"')
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

/* Labels sorted by name, so the same set given in another order is the same series. */
static char *metrics_render_labels(const char *name, const char *const *labels, bool histogram)
{
    size_t n = 0;
    while (labels != NULL && labels[2 * n] != NULL) {
        if (labels[2 * n + 1] == NULL)
            metrics_misuse("label without a value", name);
        n++;
    }
    /* order[i] points at a (name, value) pair of `labels`; insertion sort, n is tiny. */
    const char *const **order = common__xcalloc(n, sizeof(*order));
    for (size_t i = 0; i < n; i++) {
        const char *key = labels[2 * i];
        if (!metrics_name_ok(key, false) || strncmp(key, "__", 2) == 0 ||
            (histogram && strcmp(key, "le") == 0))
            metrics_misuse("bad label name", key);
        size_t j = i;
        while (j > 0 && strcmp(order[j - 1][0], key) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = &labels[2 * i];
    }
    char *buf;
    size_t len;
    FILE *f = metrics_memstream(&buf, &len);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(order[i][0], order[i - 1][0]) == 0)
            metrics_misuse("duplicate label", order[i][0]);
        fprintf(f, "%s%s=\"", i > 0 ? "," : "", order[i][0]);
        metrics_put_escaped(f, order[i][1], true);
        fputc('"', f);
    }
    metrics_memstream_close(f);
    free(order);
    return buf;
}

/* The family for name, created if new; the kind must match. Called with the lock. */
static metrics_family_t *metrics_family(const char *name, const char *help, metrics_kind_t kind)
{
    for (metrics_family_t *fam = metrics_first; fam != NULL; fam = fam->next) {
        if (strcmp(fam->name, name) != 0)
            continue;
        if (fam->kind != kind)
            metrics_misuse("name registered with two kinds of metric", name);
        return fam;
    }
    if (!metrics_name_ok(name, true))
        metrics_misuse("bad metric name", name);
    metrics_family_t *fam = common__xcalloc(1, sizeof(*fam));
    fam->name = common__xstrdup(name);
    fam->help = common__xstrdup(help != NULL ? help : "");
    fam->kind = kind;
    if (metrics_last != NULL)
        metrics_last->next = fam;
    else
        metrics_first = fam;
    metrics_last = fam;
    return fam;
}

static metrics_series_t *metrics_series_find(metrics_family_t *fam, const char *labels)
{
    for (metrics_series_t *s = fam->first; s != NULL; s = s->next) {
        if (strcmp(s->labels, labels) == 0)
            return s;
    }
    return NULL;
}

static void metrics_series_append(metrics_family_t *fam, metrics_series_t *s, char *labels)
{
    s->labels = labels;
    s->next = NULL;
    if (fam->last != NULL)
        fam->last->next = s;
    else
        fam->first = s;
    fam->last = s;
}

/* The series of (name, labels), created with `size` zeroed bytes if new, so the
 * caller can tell a new one by *created. Called with the lock held. */
static metrics_series_t *metrics_lookup(const char *name, const char *help,
                                        const char *const *labels, metrics_kind_t kind, size_t size,
                                        bool *created)
{
    metrics_family_t *fam = metrics_family(name, help, kind);
    char *rendered = metrics_render_labels(name, labels, kind == METRICS_HISTOGRAM);
    metrics_series_t *s = metrics_series_find(fam, rendered);
    *created = s == NULL;
    if (s != NULL) {
        free(rendered);
        return s;
    }
    s = common__xcalloc(1, size);
    metrics_series_append(fam, s, rendered);
    return s;
}

metrics_counter_t *metrics_counter(const char *name, const char *help, const char *const *labels)
{
    bool created;
    pthread_mutex_lock(&metrics_lock);
    metrics_series_t *s =
        metrics_lookup(name, help, labels, METRICS_COUNTER, sizeof(metrics_counter_t), &created);
    pthread_mutex_unlock(&metrics_lock);
    return (metrics_counter_t *)s;
}

metrics_gauge_t *metrics_gauge(const char *name, const char *help, const char *const *labels)
{
    bool created;
    pthread_mutex_lock(&metrics_lock);
    metrics_series_t *s =
        metrics_lookup(name, help, labels, METRICS_GAUGE, sizeof(metrics_gauge_t), &created);
    pthread_mutex_unlock(&metrics_lock);
    return (metrics_gauge_t *)s;
}

/* Registering the same computed counter or gauge again replaces its function: a
 * component that is torn down and rebuilt (a pool in tests) points it at the new one. */
static void metrics_computed_set(const char *name, const char *help, const char *const *labels,
                                 metrics_kind_t kind, double (*fn)(void *ud), void *ud)
{
    bool created;
    pthread_mutex_lock(&metrics_lock);
    size_t size = kind == METRICS_COUNTER ? sizeof(metrics_counter_t) : sizeof(metrics_gauge_t);
    metrics_series_t *s = metrics_lookup(name, help, labels, kind, size, &created);
    metrics_computed_t *c = kind == METRICS_COUNTER ? &((metrics_counter_t *)s)->computed
                                                    : &((metrics_gauge_t *)s)->computed;
    c->fn = fn;
    c->ud = ud;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_gauge_fn(const char *name, const char *help, const char *const *labels,
                      double (*fn)(void *ud), void *ud)
{
    metrics_computed_set(name, help, labels, METRICS_GAUGE, fn, ud);
}

void metrics_counter_fn(const char *name, const char *help, const char *const *labels,
                        double (*fn)(void *ud), void *ud)
{
    metrics_computed_set(name, help, labels, METRICS_COUNTER, fn, ud);
}

metrics_collector_t *metrics_collector_add(const char *name, const char *help,
                                           void (*fn)(metrics_sink_t *sink, void *ud), void *ud)
{
    metrics_collector_t *c = common__xcalloc(1, sizeof(*c));
    c->fn = fn;
    c->ud = ud;
    pthread_mutex_lock(&metrics_lock);
    c->fam = metrics_family(name, help, METRICS_GAUGE);
    c->next = c->fam->collectors;
    c->fam->collectors = c;
    pthread_mutex_unlock(&metrics_lock);
    return c;
}

void metrics_collector_remove(metrics_collector_t *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&metrics_lock);
    metrics_collector_t **p = &c->fam->collectors;
    while (*p != c)
        p = &(*p)->next;
    *p = c->next;
    pthread_mutex_unlock(&metrics_lock);
    free(c);
}

static void metrics_histogram_init(metrics_histogram_t *h, const char *name, const double *buckets,
                                   size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
            metrics_misuse("histogram buckets must be finite and increasing", name);
    }
    h->bounds = common__xcalloc(n, sizeof(*h->bounds));
    if (n > 0)
        memcpy(h->bounds, buckets, n * sizeof(*buckets));
    h->n_bounds = n;
    h->counts = common__xcalloc(n + 1, sizeof(*h->counts));
    for (size_t i = 0; i <= n; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_bits, metrics_d2u(0.0));
}

metrics_histogram_t *metrics_histogram(const char *name, const char *help,
                                       const char *const *labels, const double *buckets,
                                       size_t n_buckets)
{
    bool created;
    pthread_mutex_lock(&metrics_lock);
    metrics_histogram_t *h = (metrics_histogram_t *)metrics_lookup(
        name, help, labels, METRICS_HISTOGRAM, sizeof(metrics_histogram_t), &created);
    if (created)
        metrics_histogram_init(h, name, buckets, n_buckets);
    pthread_mutex_unlock(&metrics_lock);
    return h;
}

void metrics_counter_add(metrics_counter_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

void metrics_gauge_set(metrics_gauge_t *g, double v)
{
    atomic_store_explicit(&g->bits, metrics_d2u(v), memory_order_relaxed);
}

static void metrics_atomic_add_double(_Atomic uint64_t *bits, double delta)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, metrics_d2u(metrics_u2d(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void metrics_gauge_add(metrics_gauge_t *g, double delta)
{
    metrics_atomic_add_double(&g->bits, delta);
}

/* NaN is dropped: it belongs in no bucket and would poison the sum for good. */
void metrics_histogram_observe(metrics_histogram_t *h, double v)
{
    if (isnan(v))
        return;
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    metrics_atomic_add_double(&h->sum_bits, v);
}

/* Shortest text that reads back as the same double; Prometheus spellings for the
 * special values. */
static void metrics_format_double(char out[METRICS_DOUBLE_LEN], double v)
{
    if (isnan(v)) {
        snprintf(out, METRICS_DOUBLE_LEN, "NaN");
    } else if (isinf(v)) {
        snprintf(out, METRICS_DOUBLE_LEN, "%s", v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, METRICS_DOUBLE_LEN, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, METRICS_DOUBLE_LEN, "%.17g", v);
    }
}

static void metrics_put_double(FILE *f, double v)
{
    char tmp[METRICS_DOUBLE_LEN];
    metrics_format_double(tmp, v);
    fputs(tmp, f);
}

/* `name{labels}` or `name`, with a suffix and an extra label (for histograms). */
static void metrics_put_series_name(FILE *f, const char *name, const char *suffix,
                                    const char *labels, const char *extra)
{
    fprintf(f, "%s%s", name, suffix);
    if (labels[0] == '\0' && extra == NULL)
        return;
    fprintf(f, "{%s%s%s}", labels, labels[0] != '\0' && extra != NULL ? "," : "",
            extra != NULL ? extra : "");
}

static void metrics_put_histogram(FILE *f, const char *name, metrics_histogram_t *h)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cumulative += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        char bound[METRICS_DOUBLE_LEN], le[METRICS_DOUBLE_LEN + 8];
        metrics_format_double(bound, i < h->n_bounds ? h->bounds[i] : INFINITY);
        snprintf(le, sizeof(le), "le=\"%s\"", bound);
        metrics_put_series_name(f, name, "_bucket", h->s.labels, le);
        fprintf(f, " %llu\n", (unsigned long long)cumulative);
    }
    metrics_put_series_name(f, name, "_sum", h->s.labels, NULL);
    fputc(' ', f);
    metrics_put_double(f, metrics_u2d(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
    fputc('\n', f);
    metrics_put_series_name(f, name, "_count", h->s.labels, NULL);
    fprintf(f, " %llu\n", (unsigned long long)cumulative);
}

static void metrics_put_series(FILE *f, const metrics_family_t *fam, metrics_series_t *s)
{
    if (fam->kind == METRICS_HISTOGRAM) {
        metrics_put_histogram(f, fam->name, (metrics_histogram_t *)s);
        return;
    }
    metrics_put_series_name(f, fam->name, "", s->labels, NULL);
    fputc(' ', f);
    if (fam->kind == METRICS_COUNTER) {
        metrics_counter_t *c = (metrics_counter_t *)s;
        if (c->computed.fn != NULL)
            metrics_put_double(f, c->computed.fn(c->computed.ud));
        else
            fprintf(f, "%llu",
                    (unsigned long long)atomic_load_explicit(&c->value, memory_order_relaxed));
    } else {
        metrics_gauge_t *g = (metrics_gauge_t *)s;
        double v = g->computed.fn != NULL
                       ? g->computed.fn(g->computed.ud)
                       : metrics_u2d(atomic_load_explicit(&g->bits, memory_order_relaxed));
        metrics_put_double(f, v);
    }
    fputc('\n', f);
}

void metrics_sink_gauge(metrics_sink_t *sink, const char *const *labels, double v)
{
    char *rendered = metrics_render_labels(sink->fam->name, labels, false);
    metrics_put_series_name(sink->f, sink->fam->name, "", rendered, NULL);
    fputc(' ', sink->f);
    metrics_put_double(sink->f, v);
    fputc('\n', sink->f);
    free(rendered);
}

char *metrics_render(size_t *len)
{
    char *buf;
    size_t n;
    FILE *f = metrics_memstream(&buf, &n);
    pthread_mutex_lock(&metrics_lock);
    for (const metrics_family_t *fam = metrics_first; fam != NULL; fam = fam->next) {
        fprintf(f, "# HELP %s ", fam->name);
        metrics_put_escaped(f, fam->help, false);
        fprintf(f, "\n# TYPE %s %s\n", fam->name, metrics_kind_names[fam->kind]);
        for (metrics_series_t *s = fam->first; s != NULL; s = s->next)
            metrics_put_series(f, fam, s);
        metrics_sink_t sink = {f, fam};
        for (metrics_collector_t *c = fam->collectors; c != NULL; c = c->next)
            c->fn(&sink, c->ud);
    }
    pthread_mutex_unlock(&metrics_lock);
    metrics_memstream_close(f);
    if (len != NULL)
        *len = n;
    return buf;
}
