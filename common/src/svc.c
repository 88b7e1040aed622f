/*
 * svc: start-up, readiness and drain of a service process (svc.h).
 */
#include "common/svc.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/admin.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/otel.h"
#include "common/outbox.h"
#include "common/page_token.h"
#include "common/rpc.h"

typedef struct svc_common_cfg {
    const char *grpc_addr;
    const char *admin_addr;
    const char *db_url;
    int64_t db_pool_size;
    const char *kafka_brokers;
    const char *log_level;
    int64_t shutdown_grace_ms;
    int64_t startup_timeout_ms;
    int64_t saga_workers;
    int64_t saga_batch;
    const char *page_token_key;
    int64_t grpc_max_connection_age_ms;
    const char *rpc_user_callers;
    const char *kafka_group_instance_id;
} svc_common_cfg_t;

/* The common settings table, with the service's default ports filled in. Loaded
 * settings point into the defaults, so the table lives as long as the settings. */
#define SVC_N_COMMON 14
typedef struct svc_common_table {
    char grpc_def[32];
    char admin_def[32];
    cfg_entry_t entries[SVC_N_COMMON];
} svc_common_table_t;

struct svc {
    const svc_def_t *def;
    svc_common_table_t table;
    svc_common_cfg_t cfg;
    otel_cfg_t otel;
    rpc_tls_cfg_t tls_cfg;
    rpc_tls_t *tls; /* NULL: GRPC_PLAINTEXT=true */
    kfk_auth_t kafka_auth;
    char process[64]; /* "product-svc" */
    db_pool_t *pool;
    kfk_producer_t *producer;
    page_key_t *page_key;
    outbox_relay_t *relay;
    saga_consumer_t *consumer;
    rpc_server_t *rpc;
    admin_server_t *admin;
    void *user;
    atomic_int migrated;
    atomic_int started;
    atomic_int stopping;
    /* Held by a readiness check, which uses the clients; stop() takes it once after
     * setting `stopping`, so no check is still using what it then frees. */
    pthread_mutex_t ready_mu;
};

db_pool_t *svc_pool(const svc_t *s)
{
    return s->pool;
}

kfk_producer_t *svc_producer(const svc_t *s)
{
    return s->producer;
}

const page_key_t *svc_page_key(const svc_t *s)
{
    return s->page_key;
}

const rpc_tls_t *svc_tls(const svc_t *s)
{
    return s->tls;
}

const svc_def_t *svc_def(const svc_t *s)
{
    return s->def;
}

void *svc_config(const svc_t *s)
{
    return s->def->config;
}

void svc_user_set(svc_t *s, void *user)
{
    s->user = user;
}

void *svc_user(const svc_t *s)
{
    return s->user;
}

int svc_stopping(const svc_t *s)
{
    return atomic_load(&s->stopping);
}

static void common_table_init(svc_common_table_t *t, const svc_def_t *def)
{
    snprintf(t->grpc_def, sizeof(t->grpc_def), "0.0.0.0:%d", def->grpc_port);
    snprintf(t->admin_def, sizeof(t->admin_def), "0.0.0.0:%d", def->admin_port);
    const cfg_entry_t entries[] = {
        {"GRPC_ADDR", CFG_STR, 1, 256, t->grpc_def, offsetof(svc_common_cfg_t, grpc_addr),
         "gRPC listen address"},
        {"ADMIN_ADDR", CFG_STR, 1, 256, t->admin_def, offsetof(svc_common_cfg_t, admin_addr),
         "admin HTTP listen address (/healthz, /readyz, /metrics)"},
        {"DATABASE_URL", CFG_SECRET, 1, 1024, def->default_db_url,
         offsetof(svc_common_cfg_t, db_url), "PostgreSQL connection URI"},
        {"DB_POOL_SIZE", CFG_INT, 1, 64, "8", offsetof(svc_common_cfg_t, db_pool_size),
         "database connections, also the gRPC worker threads"},
        {"KAFKA_BROKERS", CFG_STR, 1, 1024, "127.0.0.1:9092",
         offsetof(svc_common_cfg_t, kafka_brokers), "Kafka bootstrap servers"},
        {"LOG_LEVEL", CFG_STR, 1, 16, "info", offsetof(svc_common_cfg_t, log_level),
         "debug | info | warn | error"},
        {"SHUTDOWN_GRACE", CFG_DURATION, 0, 300000, "10s",
         offsetof(svc_common_cfg_t, shutdown_grace_ms), "time for in-flight calls at shutdown"},
        {"STARTUP_TIMEOUT", CFG_DURATION, 0, 86400000, "0",
         offsetof(svc_common_cfg_t, startup_timeout_ms),
         "give up when dependencies stay down this long (0: never)"},
        {"SAGA_WORKERS", CFG_INT, 1, 64, "2", offsetof(svc_common_cfg_t, saga_workers),
         "threads applying saga events, by partition, in parallel"},
        {"SAGA_BATCH", CFG_INT, 1, 1000, "32", offsetof(svc_common_cfg_t, saga_batch),
         "saga events applied per database transaction at most"},
        {"PAGE_TOKEN_KEY", CFG_SECRET, 0, 512, "", offsetof(svc_common_cfg_t, page_token_key),
         "MAC key of page tokens, the same for every instance: 32+ bytes as hex or base64 "
         "(empty: a random key per process, so tokens fail on other instances)"},
        {"GRPC_MAX_CONNECTION_AGE", CFG_DURATION, 0, 86400000, "30s",
         offsetof(svc_common_cfg_t, grpc_max_connection_age_ms),
         "clients reconnect after this (0: never), so they find replicas added since"},
        {"RPC_USER_CALLERS", CFG_STR, 1, 1024, "gateway",
         offsetof(svc_common_cfg_t, rpc_user_callers),
         "comma list of certificate CNs whose x-user-id / x-user-role are believed (TLS)"},
        {"KAFKA_GROUP_INSTANCE_ID", CFG_STR, 0, 249, "",
         offsetof(svc_common_cfg_t, kafka_group_instance_id),
         "static consumer-group membership: an id unique to this instance and kept across "
         "its restarts (e.g. order-svc-1), so that a restart within the session timeout "
         "takes its partitions back without a rebalance (empty: dynamic membership)"},
    };
    _Static_assert(sizeof(entries) == sizeof(t->entries), "SVC_N_COMMON is the table's size");
    memcpy(t->entries, entries, sizeof(entries));
}

static int load_common_config(svc_t *s, err_t *err)
{
    common_table_init(&s->table, s->def);
    if (cfg_load(s->table.entries, SVC_N_COMMON, &s->cfg, err) < 0 ||
        cfg_load(kfk_auth_cfg_table, kfk_auth_cfg_n, &s->kafka_auth, err) < 0 ||
        cfg_load(otel_cfg_table, otel_cfg_n, &s->otel, err) < 0 ||
        cfg_load(rpc_tls_cfg_table, rpc_tls_cfg_n, &s->tls_cfg, err) < 0)
        return err->code;
    log_level_t level;
    if (log_level_parse(s->cfg.log_level, &level) < 0)
        return err_set(err, ERR_INVALID,
                       "LOG_LEVEL: must be debug, info, warn or error, got \"%s\"",
                       s->cfg.log_level);
    /* A malformed URL fails every attempt the same way: stop now (exit status 2)
     * instead of retrying it as if the server were down. */
    err_t why = ERR_INIT;
    if (db_url_check(s->cfg.db_url, &why) < 0)
        return err_set(err, ERR_INVALID, "DATABASE_URL: %s", why.msg);
    if (kfk_brokers_check(s->cfg.kafka_brokers, &why) < 0)
        return err_set(err, ERR_INVALID, "KAFKA_BROKERS: %s", why.msg);
    if (kfk_instance_id_check(s->cfg.kafka_group_instance_id, &why) < 0)
        return err_set(err, ERR_INVALID, "KAFKA_GROUP_INSTANCE_ID: %s", why.msg);
    if (rpc_user_callers_check(s->cfg.rpc_user_callers, err) < 0)
        return err->code;
    if (kfk_auth_set(&s->kafka_auth, &why) < 0)
        return err_set(err, ERR_INVALID,
                       "KAFKA_USERNAME: %s (set KAFKA_PASSWORD or KAFKA_PASSWORD_FILE)", why.msg);
    log_init(s->def->name, level);
    metrics_process_init(s->process);
    cfg_log(s->table.entries, SVC_N_COMMON, &s->cfg);
    cfg_log(kfk_auth_cfg_table, kfk_auth_cfg_n, &s->kafka_auth);
    cfg_log(otel_cfg_table, otel_cfg_n, &s->otel);
    cfg_log(rpc_tls_cfg_table, rpc_tls_cfg_n, &s->tls_cfg);
    if (s->def->config_table) {
        if (cfg_load(s->def->config_table, s->def->n_config, s->def->config, err) < 0)
            return err->code;
        cfg_log(s->def->config_table, s->def->n_config, s->def->config);
    }
    /* Last, so that nothing is left to free when a setting is refused. */
    if (s->cfg.page_token_key[0]) {
        err_t key_err = ERR_INIT;
        if (!(s->page_key = page_key_parse(s->cfg.page_token_key, &key_err)))
            return err_set(err, ERR_INVALID, "PAGE_TOKEN_KEY: %s", key_err.msg);
    }
    return 0;
}

static int svc_ready(void *ud, err_t *err)
{
    svc_t *s = ud;
    int rc = 0;
    pthread_mutex_lock(&s->ready_mu);
    if (atomic_load(&s->stopping))
        rc = err_set(err, ERR_UNAVAILABLE, "shutting down");
    else if (!atomic_load(&s->migrated))
        rc = err_set(err, ERR_UNAVAILABLE, "database not migrated yet");
    else if (!atomic_load(&s->started))
        rc = err_set(err, ERR_UNAVAILABLE, "starting");
    else if (db_pool_ping(s->pool, err) < 0 ||
             (s->producer && kfk_producer_ping(s->producer, 500, err) < 0) ||
             (s->consumer && saga_consumer_ping(s->consumer, err) < 0))
        rc = err->code;
    pthread_mutex_unlock(&s->ready_mu);
    return rc;
}

/* A pending SIGTERM/SIGINT, without waiting (the signals are blocked in every thread). */
static int signal_pending(const sigset_t *set, int wait_ms)
{
    struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (long)(wait_ms % 1000) * 1000000L};
    return sigtimedwait(set, NULL, &ts) > 0;
}

/* Migrations, retried with backoff until they succeed, the startup timeout passes or a
 * signal asks us to stop. */
static int migrate(svc_t *s, const sigset_t *signals, err_t *err)
{
    const db_migration_set_t sets[] = {common_migrations, *s->def->migrations};
    int64_t start = clock_mono_us(), backoff_ms = 100;
    for (;;) {
        err_clear(err);
        if (db_migrate(s->pool, sets, 2, 5000, err) == 0)
            return 0;
        int64_t waited_ms = (clock_mono_us() - start) / 1000;
        if (s->cfg.startup_timeout_ms > 0 && waited_ms >= s->cfg.startup_timeout_ms)
            return err->code;
        if (err->code != ERR_UNAVAILABLE && err->code != ERR_TIMEOUT)
            return err->code; /* a broken migration does not heal by waiting */
        LOG_WARN("database not ready, retrying", LOG_STR("error", err->msg),
                 LOG_INT("retry_ms", backoff_ms));
        if (signal_pending(signals, (int)backoff_ms))
            return err_set(err, ERR_CANCELLED, "stopped before the database was ready");
        backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
    }
}

static int start(svc_t *s, err_t *err)
{
    if (!s->page_key) {
        s->page_key = page_key_random();
        LOG_WARN("PAGE_TOKEN_KEY is not set: page tokens are signed with a random key of this "
                 "process and fail on every other instance and after a restart");
    }
    char client_id[96];
    snprintf(client_id, sizeof(client_id), "%s", s->process);
    s->producer = kfk_producer_new(s->cfg.kafka_brokers, client_id, NULL, err);
    if (!s->producer)
        return err->code;
    s->relay = outbox_relay_start(
        &(outbox_relay_opts_t){.db_url = s->cfg.db_url, .producer = s->producer}, err);
    if (!s->relay)
        return err->code;
    if (s->def->init && s->def->init(s, err) < 0)
        return err->code;
    if (s->def->n_routes) {
        /* KAFKA_GROUP_INSTANCE_ID: static membership (docs/ha.md, "Service instances"). */
        const char *const static_member[] = {"group.instance.id", s->cfg.kafka_group_instance_id,
                                             NULL};
        const saga_consumer_opts_t opts = {
            .brokers = s->cfg.kafka_brokers,
            .group = s->process,
            .topics = s->def->topics,
            .n_topics = s->def->n_topics,
            .routes = s->def->routes,
            .n_routes = s->def->n_routes,
            .kafka_conf = s->cfg.kafka_group_instance_id[0] ? static_member : NULL,
            .ctx = s,
            .pool = s->pool,
            .dlq_producer = NULL, /* its own, without the gap-less guarantee (saga.h) */
            .workers = (int)s->cfg.saga_workers,
            .batch_max = (int)s->cfg.saga_batch,
        };
        s->consumer = saga_consumer_start(&opts, err);
        if (!s->consumer)
            return err->code;
    }
    if (rpc_server_add_service(s->rpc, s->def->service, s) < 0)
        return err_set(err, ERR_INTERNAL, "cannot register %s", s->def->service->descriptor->name);
    if (rpc_server_start(s->rpc, err) < 0)
        return err->code;
    rpc_server_set_serving(s->rpc, 1);
    atomic_store(&s->started, 1);
    return 0;
}

/* Drain in dependency order: no new calls, then no new events, then the relay and
 * the producer (which the handlers and the relay use), then the database. */
static void stop(svc_t *s)
{
    atomic_store(&s->stopping, 1);
    pthread_mutex_lock(&s->ready_mu); /* a check in progress ends */
    pthread_mutex_unlock(&s->ready_mu);
    if (s->rpc) {
        rpc_server_set_serving(s->rpc, 0);
        rpc_server_shutdown(s->rpc, s->cfg.shutdown_grace_ms);
    }
    saga_consumer_stop(s->consumer);
    if (s->def->fini)
        s->def->fini(s);
    outbox_relay_stop(s->relay);
    kfk_producer_free(s->producer);
    rpc_server_free(s->rpc);
    admin_server_stop(s->admin);
    db_pool_free(s->pool);
    page_key_free(s->page_key);
    rpc_tls_free(s->tls);
    otel_stop(); /* last: the drain above recorded spans too */
}

static void print_usage(FILE *out, const svc_def_t *def, const char *process)
{
    char help[80];
    snprintf(help, sizeof(help), "%s --help", process);
    fprintf(out, "usage: %-29s serve (settings from the environment)\n", process);
    for (size_t i = 0; i < def->n_commands; i++)
        fprintf(out, "       %s %s %s\n", process, def->commands[i].name, def->commands[i].usage);
    fprintf(out, "       %-29s this text and every setting\n", help);
}

/* --help: the usage and every setting with its default, on stdout. Reads nothing,
 * connects to nothing. The exit status: 0, or 1 when stdout could not be written. */
static int print_help(const svc_def_t *def, const char *process)
{
    svc_common_table_t table;
    common_table_init(&table, def);
    print_usage(stdout, def, process);
    printf("\nsettings (environment variables; NAME=default, or NAME (required)):\n");
    int rc = cfg_usage_print(stdout, table.entries, SVC_N_COMMON);
    printf("\ngRPC mutual TLS (docs/trust.md):\n");
    rc |= cfg_usage_print(stdout, rpc_tls_cfg_table, rpc_tls_cfg_n);
    /* TLS_CA_FILE, the Kafka table's last entry, is listed above with gRPC's. */
    printf("\nKafka login (docs/trust.md; TLS_CA_FILE above also verifies the broker):\n");
    rc |= cfg_usage_print(stdout, kfk_auth_cfg_table, kfk_auth_cfg_n - 1);
    printf("\ntraces (OpenTelemetry's variables):\n");
    rc |= cfg_usage_print(stdout, otel_cfg_table, otel_cfg_n);
    if (def->n_config > 0) {
        printf("\nsettings of %s:\n", process);
        rc |= cfg_usage_print(stdout, def->config_table, def->n_config);
    }
    return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}

static int is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* The command argv names, or NULL after printing the usage (exit status 2). */
static const svc_command_t *find_command(const svc_def_t *def, const char *process, int argc,
                                         char **argv)
{
    for (size_t i = 0; i < def->n_commands; i++)
        if (strcmp(argv[1], def->commands[i].name) == 0 && argc - 2 == def->commands[i].n_args)
            return &def->commands[i];
    print_usage(stderr, def, process);
    return NULL;
}

int svc_main(const svc_def_t *def, int argc, char **argv)
{
    svc_t s = {.def = def, .ready_mu = PTHREAD_MUTEX_INITIALIZER};
    err_t err = ERR_INIT;
    int status = 1;
    snprintf(s.process, sizeof(s.process), "%s-svc", def->name);
    const svc_command_t *command = NULL;
    if (argc == 2 && is_help(argv[1]))
        return print_help(def, s.process);
    if (argc >= 2) {
        if (!(command = find_command(def, s.process, argc, argv)))
            return 2;
        log_set_fd(STDERR_FILENO);
    }

    /* glibc gives each thread that allocates an arena of its own (up to 8 per core) and
     * keeps what was freed there: with the gRPC workers, the saga workers and
     * librdkafka's threads, a service's resident memory grew by several MiB under load.
     * Two arenas serve two cores, and what each thread allocates is small. */
    mallopt(M_ARENA_MAX, 2);

    /* Block the stop signals in every thread (they inherit the mask); main waits for
     * them. A closed peer must be an error return, not a SIGPIPE. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The TLS files are read once, here; a command (shopctl's) serves no gRPC and
     * opens no channel, so it does not need them. */
    if (load_common_config(&s, &err) < 0 ||
        (!command && rpc_tls_setup(&s.tls_cfg, &s.tls, &err) < 0)) {
        fprintf(stderr, "%s: %s\n", s.process, err.msg);
        page_key_free(s.page_key);
        return 2;
    }
    char source[96];
    snprintf(source, sizeof(source), "/shop/%s", s.process);
    if (outbox_set_source(source) < 0) {
        err_set(&err, ERR_INVALID, "bad event source %s", source);
        goto fail;
    }
    if (!(s.pool = db_pool_new(s.cfg.db_url, (int)s.cfg.db_pool_size, &err)))
        goto fail;
    /* The gRPC core reads its environment once, at its first initialisation (rpc.h):
     * create the server before any other thread exists. */
    if (!command) {
        s.rpc = rpc_server_new(
            &(rpc_server_opts_t){.addr = s.cfg.grpc_addr,
                                 .name = s.process,
                                 .workers = (int)s.cfg.db_pool_size,
                                 .max_connection_age_ms = s.cfg.grpc_max_connection_age_ms,
                                 .max_connection_grace_ms = s.cfg.shutdown_grace_ms,
                                 .tls = s.tls,
                                 .user_callers = s.cfg.rpc_user_callers},
            &err);
        if (!s.rpc)
            goto fail;
        if (otel_start(&s.otel, s.process, &err) < 0) {
            fprintf(stderr, "%s: %s\n", s.process, err.msg);
            status = 2;
            goto out;
        }
        if (!(s.admin = admin_server_start(s.cfg.admin_addr, svc_ready, &s, &err)))
            goto fail;
    }
    if (migrate(&s, &signals, &err) < 0)
        goto fail;
    atomic_store(&s.migrated, 1);

    if (command) {
        status = command->run(&s, argc - 1, argv + 1);
        goto out;
    }

    if (start(&s, &err) < 0)
        goto fail;
    LOG_INFO("serving", LOG_STR("grpc_addr", s.cfg.grpc_addr),
             LOG_INT("grpc_port", rpc_server_port(s.rpc)), LOG_STR("admin_addr", s.cfg.admin_addr));
    int sig;
    sigwait(&signals, &sig);
    LOG_INFO("draining", LOG_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    status = 0;
    goto out;

fail:
    LOG_ERR("cannot start", LOG_STR("error", err.msg), LOG_STR("code", err_code_name(err.code)));
    status = err.code == ERR_CANCELLED ? 0 : 1;
out:
    stop(&s);
    if (status == 0 && !command)
        LOG_INFO("stopped");
    return status;
}
