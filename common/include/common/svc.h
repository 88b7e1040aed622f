/*
 * svc: the life of a service process, written once for order-, product- and
 * user-svc (docs/architecture.md §6). A service describes itself in a svc_def_t — its gRPC
 * service, migrations, saga routes and its own settings — and main() is
 *
 *     int main(int argc, char **argv) { return svc_main(&product_def, argc, argv); }
 *
 * svc_main then:
 *   1. reads the settings (the common table below plus the service's own), logs the
 *      effective values with secrets masked, and exits 2 naming a bad variable;
 *   2. starts the admin HTTP server (/healthz at once; /readyz 503 until ready);
 *   3. applies the migrations (common, then the service's), retrying with backoff
 *      while PostgreSQL is unreachable, so start-up order does not matter;
 *   4. starts the Kafka producer, the outbox relay, the saga consumer, the service's
 *      own init hook, and the gRPC server (Health/Check answers SERVING);
 *   5. on SIGTERM or SIGINT drains: Health says NOT_SERVING, the gRPC server finishes
 *      in-flight calls within SHUTDOWN_GRACE, the consumer commits and leaves its
 *      group, the relay finishes its batch, the producer flushes; exit status 0.
 *
 * Common settings (environment variables; the defaults are the service's own ports):
 *   GRPC_ADDR         gRPC listen address          default 0.0.0.0:<grpc_port>
 *   ADMIN_ADDR        admin HTTP listen address    default 0.0.0.0:<admin_port>
 *   DATABASE_URL      PostgreSQL URI (secret)      default the local stack's
 *   DB_POOL_SIZE      connections, also the number of gRPC worker threads (1..64, 8)
 *   KAFKA_BROKERS     bootstrap servers            default 127.0.0.1:9092
 *   LOG_LEVEL         debug | info | warn | error  default info
 *   SHUTDOWN_GRACE    time for in-flight calls at shutdown (default 10s)
 *   STARTUP_TIMEOUT   give up when dependencies stay down this long (default 0 = never)
 *   SAGA_WORKERS      threads applying saga events by partition in parallel (1..64, 2)
 *   SAGA_BATCH        saga events applied per transaction at most (1..1000, 32)
 *   PAGE_TOKEN_KEY    MAC key of page tokens (secret; page_token.h): 32..128 bytes as
 *                     hex or base64, the same on every instance of the service. Unset:
 *                     a random key per process, with a warning (tokens then fail on
 *                     the other instances and after a restart)
 *   TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE   the program's mutual TLS (rpc.h,
 *                     docs/trust.md): the CA and the service's own certificate and key,
 *                     for its gRPC server and its channels; read and checked once
 *   GRPC_PLAINTEXT    true: no TLS (any caller may speak for any user); without it and
 *                     without the three files the service refuses to start (exit 2)
 *   RPC_USER_CALLERS  certificate CNs whose x-user-* metadata is believed (gateway)
 */
#ifndef COMMON_SVC_H
#define COMMON_SVC_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "common/config.h"
#include "common/db.h"
#include "common/err.h"
#include "common/kfk.h"
#include "common/page_token.h"
#include "common/saga.h"

typedef struct svc svc_t;

/* An operator command: `<program> <name> <n_args arguments>`. svc_main checks the
 * name and the argument count before it touches anything (usage errors exit 2 at
 * once), sends its own log lines to stderr, applies the migrations, then calls run
 * with argv[0] = the command name. run returns the exit status. */
typedef struct svc_command {
    const char *name;
    int n_args;
    const char *usage; /* the arguments and notes, e.g. "EMAIL   (password on stdin)" */
    int (*run)(svc_t *s, int argc, char **argv);
} svc_command_t;

typedef struct svc_def {
    const char *name; /* "product": logs say svc "product", the process is
                               product-svc, the Kafka group "product-svc" */
    int grpc_port;    /* default ports (docs/architecture.md §6) */
    int admin_port;
    const char *default_db_url;
    ProtobufCService *service;            /* the generated service with handlers */
    const db_migration_set_t *migrations; /* the service's own, after common's */
    const char *const *topics;            /* consumed; NULL/0 for none */
    size_t n_topics;
    const saga_route_t *routes;
    size_t n_routes;
    /* The service's own settings: a cfg table filling *config (may be NULL/0). */
    const cfg_entry_t *config_table;
    size_t n_config;
    void *config;
    /* init: runs after the database is migrated and the producer exists, before the
     * gRPC server starts (create clients, start background threads). fini: runs
     * after the gRPC server and consumer stopped, before the relay and producer do.
     * Either may be NULL. init returns 0 or a negative code with err set (fatal). */
    int (*init)(svc_t *s, err_t *err);
    void (*fini)(svc_t *s);
    /* Operator commands (e.g. `user-svc create-admin EMAIL`): argv[1] names one
     * instead of serving. May be NULL/0. */
    const struct svc_command *commands;
    size_t n_commands;
} svc_def_t;

/* svc_main: runs the service until SIGTERM/SIGINT; returns the process exit status
 * (0 after a clean drain, 1 on a fatal start-up error, 2 on bad settings or usage). */
int svc_main(const svc_def_t *def, int argc, char **argv);

/* Accessors for handlers and hooks (the gRPC handlers get the svc_t as
 * rpc_call_ctx(call), saga handlers as their ctx). Borrowed; valid until
 * svc_main returns. Thread-safe. */
db_pool_t *svc_pool(const svc_t *s);
kfk_producer_t *svc_producer(const svc_t *s);
/* svc_page_key: the key of the service's page tokens (PAGE_TOKEN_KEY), set before the
 * gRPC server starts. */
const page_key_t *svc_page_key(const svc_t *s);
/* svc_tls: the service's mutual TLS for the channels it opens (rpc_channel_opts_t.tls),
 * or NULL with GRPC_PLAINTEXT=true. Set before the init hook runs. */
const struct rpc_tls *svc_tls(const svc_t *s);
const svc_def_t *svc_def(const svc_t *s);
void *svc_config(const svc_t *s);

/* svc_user_set / svc_user: one pointer of the service's own state (set by init). */
void svc_user_set(svc_t *s, void *user);
void *svc_user(const svc_t *s);

/* svc_stopping: true once shutdown began (for background loops). */
int svc_stopping(const svc_t *s);

#endif
