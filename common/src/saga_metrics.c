/*
 * saga_metrics: slots of registry pointers (saga_metrics.h).
 *
 * Per topic (plus one for a topic not subscribed, which cannot happen but costs
 * nothing) and per type (each route, plus "other"): an atomic pointer per outcome
 * and one for failures, filled at creation for the subscribed topics and the routed
 * types (so they show at zero), on first use for the rest. Two threads filling a
 * slot at once get the same pointer from the registry.
 */
#include "saga_metrics.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/metrics.h"

typedef _Atomic(metrics_counter_t *) saga_slot_t;

#define SAGA_METRICS_CONSUMED      "kafka_events_consumed_total"
#define SAGA_METRICS_CONSUMED_HELP "Kafka events consumed"
#define SAGA_METRICS_FAILED        "kafka_events_failed_total"
#define SAGA_METRICS_FAILED_HELP   "Failed attempts at handling a Kafka event"

struct saga_metrics {
    char **topics; /* n_topics; slot n_topics is "other" */
    size_t n_topics;
    const saga_route_t *routes; /* n_routes; type slot n_routes is "other" */
    size_t n_routes;
    const char *const *outcomes;
    size_t n_outcomes;
    saga_slot_t *consumed;          /* [topic][type][outcome] */
    saga_slot_t *failed;            /* [topic][type] */
    metrics_counter_t **duplicate;  /* [topic] */
    metrics_histogram_t **duration; /* [topic] */
    metrics_counter_t **dlq;        /* [topic] */
    metrics_counter_t **truncated;  /* [topic] */
    metrics_counter_t **dropped;    /* [topic] */
};

static const char *saga_metrics_topic_name(const saga_metrics_t *m, size_t t)
{
    return t < m->n_topics ? m->topics[t] : "other";
}

static const char *saga_metrics_type_name(const saga_metrics_t *m, size_t r)
{
    return r < m->n_routes ? m->routes[r].type->name : "other";
}

/* The counter in *slot, looked up with labels the first time. */
static metrics_counter_t *saga_metrics_slot(saga_slot_t *slot, const char *name, const char *help,
                                            const char *const *labels)
{
    metrics_counter_t *c = atomic_load_explicit(slot, memory_order_acquire);
    if (!c) {
        c = metrics_counter(name, help, labels);
        atomic_store_explicit(slot, c, memory_order_release);
    }
    return c;
}

static metrics_counter_t *saga_metrics_consumed(saga_metrics_t *m, size_t t, size_t r, size_t o)
{
    size_t cell = (t * (m->n_routes + 1) + r) * m->n_outcomes + o;
    const char *labels[] = {"topic",   saga_metrics_topic_name(m, t),
                            "type",    saga_metrics_type_name(m, r),
                            "outcome", m->outcomes[o],
                            NULL};
    return saga_metrics_slot(&m->consumed[cell], SAGA_METRICS_CONSUMED, SAGA_METRICS_CONSUMED_HELP,
                             labels);
}

static metrics_counter_t *saga_metrics_failed(saga_metrics_t *m, size_t t, size_t r)
{
    const char *labels[] = {"topic", saga_metrics_topic_name(m, t), "type",
                            saga_metrics_type_name(m, r), NULL};
    return saga_metrics_slot(&m->failed[t * (m->n_routes + 1) + r], SAGA_METRICS_FAILED,
                             SAGA_METRICS_FAILED_HELP, labels);
}

saga_metrics_t *saga__metrics_new(const char *const *topics, size_t n_topics,
                                  const saga_route_t *routes, size_t n_routes,
                                  const char *const *outcomes, size_t n_outcomes)
{
    saga_metrics_t *m = common__xcalloc(1, sizeof(*m));
    m->n_topics = n_topics;
    m->topics = common__xcalloc(n_topics + 1, sizeof(*m->topics));
    for (size_t t = 0; t < n_topics; t++)
        m->topics[t] = common__xstrdup(topics[t]);
    m->routes = routes;
    m->n_routes = n_routes;
    m->outcomes = outcomes;
    m->n_outcomes = n_outcomes;
    size_t cells = (n_topics + 1) * (n_routes + 1);
    m->consumed = common__xcalloc(cells * n_outcomes, sizeof(*m->consumed));
    m->failed = common__xcalloc(cells, sizeof(*m->failed));
    m->duplicate = common__xcalloc(n_topics + 1, sizeof(*m->duplicate));
    m->duration = common__xcalloc(n_topics + 1, sizeof(*m->duration));
    m->dlq = common__xcalloc(n_topics + 1, sizeof(*m->dlq));
    m->truncated = common__xcalloc(n_topics + 1, sizeof(*m->truncated));
    m->dropped = common__xcalloc(n_topics + 1, sizeof(*m->dropped));
    for (size_t t = 0; t <= n_topics; t++) {
        const char *labels[] = {"topic", saga_metrics_topic_name(m, t), NULL};
        m->duplicate[t] = metrics_counter("kafka_events_duplicate_total",
                                          "Kafka events skipped as duplicates", labels);
        m->duration[t] =
            metrics_histogram("kafka_event_duration_seconds", "Kafka event handling time", labels,
                              metrics_latency_buckets, metrics_latency_buckets_n);
        m->dlq[t] = metrics_counter("kafka_events_dlq_total",
                                    "Kafka events sent to a dead-letter topic", labels);
        m->truncated[t] = metrics_counter(
            "kafka_events_dlq_truncated_total",
            "Dead-letter copies without the whole original (too large, or refused whole)", labels);
        m->dropped[t] = metrics_counter(
            "kafka_events_dlq_dropped_total",
            "Kafka events that could not be dead-lettered and were skipped", labels);
        for (size_t r = 0; t < n_topics && r < n_routes; r++) {
            saga_metrics_failed(m, t, r);
            for (size_t o = 0; o < n_outcomes; o++) {
                if (outcomes[o] != NULL) /* the unsettled states have no label */
                    saga_metrics_consumed(m, t, r, o);
            }
        }
    }
    return m;
}

void saga__metrics_free(saga_metrics_t *m)
{
    if (!m)
        return;
    for (size_t t = 0; t < m->n_topics; t++)
        free(m->topics[t]);
    free(m->topics);
    free(m->consumed);
    free(m->failed);
    free(m->duplicate);
    free(m->duration);
    free(m->dlq);
    free(m->truncated);
    free(m->dropped);
    free(m);
}

static size_t saga_metrics_topic(const saga_metrics_t *m, const char *topic)
{
    size_t t = 0;
    while (t < m->n_topics && strcmp(m->topics[t], topic) != 0)
        t++;
    return t;
}

static size_t saga_metrics_type(const saga_metrics_t *m, const saga_route_t *route)
{
    return route ? (size_t)(route - m->routes) : m->n_routes;
}

void saga__metrics_settled(saga_metrics_t *m, const char *topic, const saga_route_t *route,
                           size_t outcome, bool duplicate, double secs)
{
    size_t t = saga_metrics_topic(m, topic), r = saga_metrics_type(m, route);
    if (outcome >= m->n_outcomes)
        return;
    metrics_counter_add(saga_metrics_consumed(m, t, r, outcome), 1);
    if (duplicate)
        metrics_counter_add(m->duplicate[t], 1);
    metrics_histogram_observe(m->duration[t], secs);
}

void saga__metrics_failed(saga_metrics_t *m, const char *topic, const saga_route_t *route)
{
    metrics_counter_add(
        saga_metrics_failed(m, saga_metrics_topic(m, topic), saga_metrics_type(m, route)), 1);
}

void saga__metrics_dead_lettered(saga_metrics_t *m, const char *topic, bool truncated)
{
    size_t t = saga_metrics_topic(m, topic);
    metrics_counter_add(m->dlq[t], 1);
    if (truncated)
        metrics_counter_add(m->truncated[t], 1);
}

void saga__metrics_dropped(saga_metrics_t *m, const char *topic)
{
    metrics_counter_add(m->dropped[saga_metrics_topic(m, topic)], 1);
}
