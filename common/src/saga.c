/*
 * saga: the consumer's threads (saga.h) — one poller and a few workers.
 *
 * The poller is the only thread that talks to the consumer group: it polls, serves
 * rebalances, and hands each message to the worker its partition maps to (a hash of
 * topic and partition). A worker takes everything queued for it, up to batch_max,
 * and applies it (saga_batch.c); then takes the next lot. A partition always goes to
 * the same worker and a worker keeps the order it was given, so each partition — so
 * each key — is applied in order, while different partitions proceed in parallel.
 *
 * Back-pressure: a worker's queue holds 2 × batch_max messages; when it is full the
 * poller waits for room, and stops polling meanwhile (librdkafka keeps fetching into
 * its own bounded queue). As with one thread, a worker stuck retrying for longer than
 * max.poll.interval.ms makes the member leave the group; its partitions move.
 *
 * Revocation (kfk_revoke_fn, on the poller's thread inside a poll): the messages of
 * revoked partitions still queued are dropped (not acknowledged: the next owner gets
 * them), and the poller waits until no worker holds one in its current batch, so the
 * offsets committed next are final for those partitions.
 */
#include "common/saga.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "cond_internal.h"
#include "saga_internal.h"
#include "saga_metrics.h"

#define SAGA_POLL_MS          100
#define SAGA_WORKERS_DEFAULT  2
#define SAGA_BATCH_DEFAULT    32
#define SAGA_QUEUE_PER_BATCH  2
#define SAGA_ENQUEUE_SLICE_MS 100

typedef struct saga_worker {
    saga_consumer_t *c;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue changed, batch finished, or stop */
    saga_item_t *q;    /* ring of queued messages (m and received_us set) */
    size_t q_head, q_len, q_cap;
    saga_item_t *batch; /* the batch in hand: batch_max slots */
    size_t n_batch;     /* guarded by mu while the poller may look (revocation) */
    bool stop;
} saga_worker_t;

/* ---- workers ---- */

static bool saga_item_in(const saga_item_t *it, const kfk_partition_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (kfk_msg_partition(it->m) == parts[i].partition &&
            strcmp(kfk_msg_topic(it->m), parts[i].topic) == 0)
            return true;
    return false;
}

/* Moves up to batch_max queued messages into the batch; false once stopped. */
static bool saga_worker_take(saga_worker_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->q_len == 0 && !w->stop)
        pthread_cond_wait(&w->cv, &w->mu);
    bool go = !w->stop;
    size_t n = 0;
    for (; go && w->q_len > 0 && n < (size_t)w->c->o.batch_max; n++) {
        w->batch[n] = w->q[w->q_head];
        w->q_head = (w->q_head + 1) % w->q_cap;
        w->q_len--;
    }
    w->n_batch = n;
    pthread_cond_broadcast(&w->cv); /* room for the poller */
    pthread_mutex_unlock(&w->mu);
    return go;
}

/* Frees the batch's items and tells a waiting revocation it is done. */
static void saga_worker_release(saga_worker_t *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->n_batch;
    w->n_batch = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        arena_free(w->batch[i].a);
        kfk_msg_free(w->batch[i].m);
        w->batch[i] = (saga_item_t){0};
    }
}

static void *saga_worker_main(void *arg)
{
    saga_worker_t *w = arg;
    while (saga_worker_take(w)) {
        saga__batch(w->c, w->batch, w->n_batch);
        saga_worker_release(w);
    }
    /* Stopped: what is still queued was never started (redelivered later). */
    for (; w->q_len > 0; w->q_len--, w->q_head = (w->q_head + 1) % w->q_cap)
        kfk_msg_free(w->q[w->q_head].m);
    return NULL;
}

/* Queues m on w, waiting for room; false (m not taken) if the consumer stops first. */
static bool saga_worker_put(saga_worker_t *w, kfk_msg_t *m)
{
    pthread_mutex_lock(&w->mu);
    while (w->q_len == w->q_cap && !saga__stopping(w->c)) {
        struct timespec ts = clock_mono_deadline(SAGA_ENQUEUE_SLICE_MS);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    bool ok = w->q_len < w->q_cap;
    if (ok) {
        w->q[(w->q_head + w->q_len) % w->q_cap] =
            (saga_item_t){.m = m, .received_us = clock_mono_us()};
        w->q_len++;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return ok;
}

/* ---- the poller ---- */

static saga_worker_t *saga_worker_for(saga_consumer_t *c, const kfk_msg_t *m)
{
    uint32_t h = 2166136261u;
    for (const char *p = kfk_msg_topic(m); *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ (uint32_t)kfk_msg_partition(m)) * 16777619u;
    return &c->workers[h % (uint32_t)c->n_workers];
}

/* Drops the queued messages of the revoked partitions and waits until no batch in
 * hand holds one (kfk_revoke_fn). */
static void saga_on_revoke(const kfk_partition_t *parts, size_t n, void *ud)
{
    saga_consumer_t *c = ud;
    for (int k = 0; k < c->n_workers; k++) {
        saga_worker_t *w = &c->workers[k];
        pthread_mutex_lock(&w->mu);
        size_t kept = 0;
        for (size_t i = 0; i < w->q_len; i++) {
            saga_item_t it = w->q[(w->q_head + i) % w->q_cap];
            if (saga_item_in(&it, parts, n))
                kfk_msg_free(it.m);
            else
                w->q[(w->q_head + kept++) % w->q_cap] = it;
        }
        w->q_len = kept;
        for (;;) {
            bool busy = false;
            for (size_t i = 0; i < w->n_batch && !busy; i++)
                busy = saga_item_in(&w->batch[i], parts, n);
            if (!busy)
                break;
            pthread_cond_wait(&w->cv, &w->mu);
        }
        pthread_mutex_unlock(&w->mu);
    }
}

/* Stops and joins workers [0, n). */
static void saga_workers_stop(saga_consumer_t *c, int n)
{
    for (int k = 0; k < n; k++) {
        saga_worker_t *w = &c->workers[k];
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    for (int k = 0; k < n; k++)
        pthread_join(c->workers[k].thread, NULL);
}

static void *saga_poller_main(void *arg)
{
    saga_consumer_t *c = arg;
    while (!saga__stopping(c)) {
        kfk_msg_t *m = kfk_consumer_poll(c->kc, SAGA_POLL_MS);
        if (m && !saga_worker_put(saga_worker_for(c, m), m))
            kfk_msg_free(m);
    }
    saga_workers_stop(c, c->n_workers);
    kfk_consumer_close(c->kc); /* commits what the workers recorded, leaves the group */
    return NULL;
}

/* ---- start / stop ---- */

static int saga_check_opts(const saga_consumer_opts_t *o, err_t *err)
{
    if (!o->pool || !o->routes || o->n_routes == 0 || !o->topics || o->n_topics == 0)
        return err_set(err, ERR_INVALID, "saga consumer needs a pool, topics and routes");
    for (size_t i = 0; i < o->n_routes; i++)
        if (!o->routes[i].type || !o->routes[i].fn)
            return err_set(err, ERR_INVALID, "saga route %zu has no type or handler", i);
    if (o->max_attempts < 0 || o->backoff_base_ms < 0 || o->backoff_max_ms < 0 || o->workers < 0 ||
        o->batch_max < 0 || o->commit_interval_ms < 0)
        return err_set(err, ERR_INVALID, "saga consumer limits must not be negative");
    return 0;
}

static void saga_worker_init(saga_consumer_t *c, saga_worker_t *w)
{
    w->c = c;
    pthread_mutex_init(&w->mu, NULL);
    common__cond_init_monotonic(&w->cv);
    w->q_cap = (size_t)c->o.batch_max * SAGA_QUEUE_PER_BATCH;
    w->q = common__xcalloc(w->q_cap, sizeof(*w->q));
    w->batch = common__xcalloc((size_t)c->o.batch_max, sizeof(*w->batch));
}

static void saga_consumer_free(saga_consumer_t *c)
{
    for (int k = 0; k < c->n_workers; k++) {
        pthread_cond_destroy(&c->workers[k].cv);
        pthread_mutex_destroy(&c->workers[k].mu);
        free(c->workers[k].q);
        free(c->workers[k].batch);
    }
    free(c->workers);
    kfk_producer_free(c->dlq_own);
    saga__metrics_free(c->metrics);
    pthread_mutex_destroy(&c->dlq_mu);
    free(c->routes);
    free(c->group);
    free(c->brokers);
    free(c);
}

static saga_consumer_t *saga_consumer_new(const saga_consumer_opts_t *o, kfk_consumer_t *kc)
{
    saga_consumer_t *c = common__xcalloc(1, sizeof(*c));
    c->o = *o;
    c->routes = common__xcalloc(o->n_routes, sizeof(*c->routes));
    memcpy(c->routes, o->routes, o->n_routes * sizeof(*c->routes));
    c->o.routes = c->routes;
    c->o.topics = NULL; /* subscribed: librdkafka has its own copy */
    c->group = common__xstrdup(o->group);
    c->o.group = c->group;
    c->brokers = common__xstrdup(o->brokers); /* for a dead-letter producer made later */
    c->o.brokers = c->brokers;
    pthread_mutex_init(&c->dlq_mu, NULL);
    c->o.max_attempts = o->max_attempts ? o->max_attempts : 5;
    c->o.backoff_base_ms = o->backoff_base_ms ? o->backoff_base_ms : 100;
    c->o.backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 5000;
    c->o.workers = o->workers ? o->workers : SAGA_WORKERS_DEFAULT;
    c->o.batch_max = o->batch_max ? o->batch_max : SAGA_BATCH_DEFAULT;
    c->kc = kc;
    c->metrics = saga__metrics_new(o->topics, o->n_topics, c->routes, o->n_routes,
                                   saga__outcome_names, SAGA_N_OUTCOMES);
    atomic_init(&c->stop, false);
    c->n_workers = c->o.workers;
    c->workers = common__xcalloc((size_t)c->n_workers, sizeof(*c->workers));
    for (int k = 0; k < c->n_workers; k++)
        saga_worker_init(c, &c->workers[k]);
    kfk_consumer_on_revoke(kc, saga_on_revoke, c);
    kfk_consumer_set_commit_interval(kc, o->commit_interval_ms);
    return c;
}

saga_consumer_t *saga_consumer_start(const saga_consumer_opts_t *o, err_t *err)
{
    if (saga_check_opts(o, err) != 0)
        return NULL;
    kfk_consumer_t *kc =
        kfk_consumer_new(o->brokers, o->group, o->topics, o->n_topics, o->kafka_conf, err);
    if (!kc)
        return NULL;
    saga_consumer_t *c = saga_consumer_new(o, kc);
    int started = 0;
    for (; started < c->n_workers; started++)
        if (pthread_create(&c->workers[started].thread, NULL, saga_worker_main,
                           &c->workers[started]) != 0)
            break;
    if (started == c->n_workers && pthread_create(&c->poller, NULL, saga_poller_main, c) == 0)
        return c;
    saga_workers_stop(c, started);
    kfk_consumer_close(kc);
    saga_consumer_free(c);
    err_set(err, ERR_INTERNAL, "saga consumer: cannot start its threads");
    return NULL;
}

int saga_consumer_ping(saga_consumer_t *c, err_t *err)
{
    return kfk_consumer_ping(c->kc, err);
}

void saga_consumer_stop(saga_consumer_t *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->poller, NULL);
    saga_consumer_free(c);
}
