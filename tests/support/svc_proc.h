/*
 * svc_proc: a real service binary (product-svc, user-svc, order-svc) as a child
 * process of a test, on ports of its choosing, with the stack's KAFKA_BROKERS and
 * the test's own environment overrides; waits until it serves gRPC and its saga
 * consumer holds partitions, stops it with SIGTERM, and reads its JSON log.
 *
 * Used before Check forks the tests (no assertion) except where a function says it
 * fails the test. Not thread-safe.
 */
#ifndef SVC_PROC_H
#define SVC_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SVC_PROC_TIMEOUT_MS 60000
#define SVC_PROC_ENV_MAX    16

/* A service binary running as a child process. */
typedef struct svc_proc {
    char name[32]; /* "order-svc", also in the log file's name */
    char binary[512];
    char *env[SVC_PROC_ENV_MAX + 1]; /* "NAME=value" added to the inherited environment */
    pid_t pid;
    int grpc_port;
    char log[256]; /* its stdout and stderr */
} svc_proc_t;

/* svc_proc_start: runs `binary` with GRPC_ADDR and ADMIN_ADDR on free ports of its
 * choosing, DB_POOL_SIZE=8, SHUTDOWN_GRACE=5s, LOG_LEVEL=info, the stack's
 * KAFKA_BROKERS, the stack's certificate of the program `name` begins with
 * (TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE from TLS_CA_FILE and
 * <SVC>_TLS_CERT_FILE / <SVC>_TLS_KEY_FILE: "order-svc-1" is ORDER's) and `env` (NULL-terminated "NAME=value" strings, copied, later ones
 * win over these defaults; at most SVC_PROC_ENV_MAX), and waits until it serves gRPC
 * and its saga consumer holds partitions. 0, or -1 with a message on stderr. The
 * child gets SIGTERM if the test process dies, so a crashed run leaves no member in
 * the consumer group. */
int svc_proc_start(svc_proc_t *p, const char *binary, const char *name, const char *const *env);

/* svc_proc_restart: starts a stopped process again with the same binary and env (new
 * ports). 0 or -1. */
int svc_proc_restart(svc_proc_t *p);

/* svc_proc_stop: SIGTERM and wait; the exit status (0 after a clean drain, -1 if it
 * had to be killed). NULL or a stopped process: 0. */
int svc_proc_stop(svc_proc_t *p);

/* svc_proc_kill: SIGKILL and wait, as a crash: no drain, no goodbye to the consumer
 * group. NULL or a stopped process: nothing. */
void svc_proc_kill(svc_proc_t *p);

/* svc_proc_free: frees the copied env (after svc_proc_stop) and deletes the log file
 * unless keep_log (say so when a test failed: the log is where to look). */
void svc_proc_free(svc_proc_t *p, bool keep_log);

/* svc_proc_start_db: svc_proc_start of `binary` as "<its file name>-<index>" with
 * DATABASE_URL from the environment variable `db_env` (e.g. "PRODUCT_DATABASE_URL")
 * and DB_POOL_SIZE=4 (several instances share the database). 0, or -1 with a message
 * on stderr (also when db_env or KAFKA_BROKERS is unset). */
int svc_proc_start_db(svc_proc_t *p, const char *binary, int index, const char *db_env);

/* svc_proc_end: svc_proc_stop, then svc_proc_free keeping the log file unless the
 * status is 0; the status, or -1 if the process was not running. */
int svc_proc_end(svc_proc_t *p);

/* svc_proc_partitions: how many partitions the process's saga consumer holds now,
 * from its log (assigned minus revoked). */
int svc_proc_partitions(const svc_proc_t *p);

/* svc_log_count: how many lines of the log at `path` contain both needles (b may be
 * NULL). */
int svc_log_count(const char *path, const char *a, const char *b);

/* svc_topic_partitions: the partition count of `topic` (broker metadata through
 * kcat), or -1 with a message on stderr. */
int svc_topic_partitions(const char *topic);

/* svc_wait_partitions: waits until procs[0..n) together hold `want` partitions — all
 * of their topics' when they are the only members of their consumer group. On the
 * shared stack another test's instance may be a member too, or may have died without
 * leaving (its partitions stay unserved until its session times out, 45 s): events
 * of this test's orders would then stall. Fails the test after timeout_ms. */
void svc_wait_partitions(svc_proc_t *const *procs, size_t n, int want, int timeout_ms);

/* svc_env: a required environment variable (exits the program if unset). */
const char *svc_env(const char *name);

/* svc_program: the program to run for a service: the environment variable `name` if
 * set and not empty (e.g. ORDER_SVC_PROGRAM=<a peer implementation>, bench/peers),
 * else `compiled` (the build's binary). */
const char *svc_program(const char *name, const char *compiled);

/* svc_channel: a channel to 127.0.0.1:port that speaks as the gateway (mutual TLS
 * with the stack's GATEWAY_TLS_CERT_FILE / GATEWAY_TLS_KEY_FILE and TLS_CA_FILE), as
 * tests calling a service for a user must; plaintext when the environment says
 * GRPC_PLAINTEXT=true (the services started here then inherit it). Fails the test
 * when the channel cannot be made; exits when the stack's variables are unset. */
struct rpc_channel *svc_channel(int port);

#endif
