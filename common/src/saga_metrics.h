/*
 * saga_metrics: the saga consumer's per-event metrics, from closed label sets and
 * without a registry lookup per event (internal to common/src/saga*.c).
 *
 *   kafka_events_consumed_total{topic, type, outcome}
 *   kafka_events_failed_total{topic, type}
 *   kafka_events_duplicate_total{topic}
 *   kafka_event_duration_seconds{topic}
 *   kafka_events_dlq_total{topic}
 *   kafka_events_dlq_truncated_total{topic}
 *   kafka_events_dlq_dropped_total{topic}
 *
 * topic is one the consumer subscribed to; type the full name of a routed event
 * type, or "other" for anything else a producer may have written in ce_type (not
 * routed here, or forged): a hostile producer cannot add series. Every series of a
 * subscribed topic and a routed type exists at zero from the start, so that an
 * increase() alert sees the first event; the "other" type's series are looked up
 * the first time their slot is used. Thread-safe.
 */
#ifndef COMMON_SAGA_METRICS_H
#define COMMON_SAGA_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/saga.h"

typedef struct saga_metrics saga_metrics_t;

/* saga__metrics_new: slots for topics[0..n_topics) and routes[0..n_routes) (the
 * routes are borrowed and must outlive the result; the topics are copied). */
saga_metrics_t *saga__metrics_new(const char *const *topics, size_t n_topics,
                                  const saga_route_t *routes, size_t n_routes,
                                  const char *const *outcomes, size_t n_outcomes);
void saga__metrics_free(saga_metrics_t *m);

/* One settled event: route NULL when none matched its type; outcome indexes the
 * outcomes given to saga__metrics_new; duplicate also counts it as skipped. */
void saga__metrics_settled(saga_metrics_t *m, const char *topic, const saga_route_t *route,
                           size_t outcome, bool duplicate, double secs);

/* One failed attempt at an event. */
void saga__metrics_failed(saga_metrics_t *m, const char *topic, const saga_route_t *route);

/* An event of topic copied to its dead-letter topic (truncated: not the whole
 * original), or dropped because no copy could be produced. */
void saga__metrics_dead_lettered(saga_metrics_t *m, const char *topic, bool truncated);
void saga__metrics_dropped(saga_metrics_t *m, const char *topic);

#endif
