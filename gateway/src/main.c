/*
 * gateway: the REST front door of the fleet (docs/architecture.md §5, §6).
 *
 * Not a service: no database, no saga, so not svc_main; the same conventions
 * though: one settings table read once, JSON logs, SIGTERM/SIGINT drain, exit
 * status 0 after a clean drain, 1 when start-up fails, 2 for bad settings.
 *
 * Start-up order does not matter: Redis and the services are connected lazily
 * and retried (each request fails 503 meanwhile, /readyz says what is missing).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "gateway.h"
#include "http.h"
#include "routes.h"

#define KEY_FILE_MAX (64 * 1024)

#define F(field) offsetof(gateway_config_t, field)

static const cfg_entry_t config_table[] = {
    {"GATEWAY_ADDR", CFG_STR, 1, 256, "0.0.0.0:8080", F(addr), "HTTP listen address"},
    {"REDIS_URL", CFG_SECRET, 1, 1024, "redis://127.0.0.1:6380", F(redis_url),
     "Redis for sessions and rate limits: redis://[user][:password]@host:port[/db]"},
    {"REDIS_PASSWORD", CFG_SECRET, 0, 255, "", F(redis_password),
     "password of REDIS_URL's user (instead of one in the URL)"},
    {"REDIS_SENTINELS", CFG_STR, 0, 1024, "", F(redis_sentinels),
     "comma list of Redis Sentinels host:port: ask them for the master of REDIS_MASTER_NAME"
     " (REDIS_URL's host and port are then not used; none: REDIS_URL's server)"},
    {"REDIS_MASTER_NAME", CFG_STR, 1, 127, "shop", F(redis_master_name),
     "the master's name at the Sentinels"},
    {"REDIS_REPLICA_WAIT", CFG_DURATION, 0, 1000, "100ms", F(redis_replica_wait_ms),
     "with REDIS_SENTINELS: how long a login, refresh or logout waits for the replica to have"
     " its write (WAIT; 0: does not wait)"},
    {"REDIS_PREFIX", CFG_STR, 0, 64, "gw:", F(redis_prefix), "prefix of every Redis key"},
    {"REDIS_POOL_SIZE", CFG_INT, 1, 256, "16", F(redis_pool_size), "Redis connections"},
#define UPSTREAM_SETTING(id, name, env, addr, svc, help)                                           \
    {env, CFG_STR, 1, 1024, addr, F(upstream_addr[UPSTREAM_##id]), help},
    UPSTREAM_TABLE(UPSTREAM_SETTING)
#undef UPSTREAM_SETTING
        {"JWT_ALG", CFG_STR, 5, 5, "HS256", F(jwt_alg), "HS256 or ES256"},
    {"JWT_SECRET", CFG_SECRET, 0, 4096, "", F(jwt_secret),
     "HS256 signing secret, at least 32 bytes (required with HS256)"},
    {"JWT_PRIVATE_KEY_FILE", CFG_STR, 0, 1024, "", F(jwt_private_key_file),
     "ES256: PEM file of the P-256 signing key"},
    {"JWT_PUBLIC_KEY_FILE", CFG_STR, 0, 1024, "", F(jwt_public_key_file),
     "ES256: PEM file of the matching public key"},
    {"JWT_ISSUER", CFG_STR, 1, 256, "shop-gateway", F(jwt_issuer), "iss of access tokens"},
    {"JWT_AUDIENCE", CFG_STR, 1, 256, "shop-api", F(jwt_audience), "aud of access tokens"},
    {"ACCESS_TOKEN_TTL", CFG_DURATION, 1000, 900000, "15m", F(access_ttl_ms),
     "access token lifetime (at most 15m)"},
    {"REFRESH_TOKEN_TTL", CFG_DURATION, 60000, 2592000000LL, "168h", F(refresh_ttl_ms),
     "absolute session lifetime (refresh tokens die with it)"},
    {"UPSTREAM_TIMEOUT", CFG_DURATION, 10, 60000, "2s", F(upstream_timeout_ms),
     "deadline of every call to a service"},
    {"BODY_LIMIT", CFG_INT, 1024, 16777216, "65536", F(body_limit),
     "largest request body in bytes (more is 413)"},
    {"HTTP_THREADS", CFG_INT, 1, 64, "4", F(http_threads), "HTTP worker threads"},
    {"MAX_CONNECTIONS", CFG_INT, 1, 65536, "1024", F(max_connections),
     "concurrent HTTP connections"},
    {"CONNECTION_TIMEOUT", CFG_DURATION, 1000, 3600000, "30s", F(connection_timeout_ms),
     "idle HTTP connections are closed after this"},
    {"LOGIN_RATE_IP", CFG_INT, 1, 1000000, "10", F(login_ip_limit),
     "login attempts per client IP per AUTH_RATE_WINDOW"},
    {"LOGIN_RATE_ACCOUNT", CFG_INT, 1, 1000000, "5", F(login_account_limit),
     "login attempts per account (email) per AUTH_RATE_WINDOW"},
    {"REGISTER_RATE_IP", CFG_INT, 1, 1000000, "10", F(register_ip_limit),
     "registrations per client IP per AUTH_RATE_WINDOW"},
    {"REGISTER_RATE_ACCOUNT", CFG_INT, 1, 1000000, "3", F(register_account_limit),
     "registration attempts per email per AUTH_RATE_WINDOW"},
    {"AUTH_RATE_WINDOW", CFG_DURATION, 1000, 86400000, "1m", F(auth_window_ms),
     "window of the login and register limits"},
    {"USER_RATE_LIMIT", CFG_INT, 1, 100000000, "600", F(user_request_limit),
     "authenticated requests per user per USER_RATE_WINDOW"},
    {"USER_RATE_WINDOW", CFG_DURATION, 1000, 86400000, "1m", F(user_window_ms),
     "window of the per-user request budget"},
    {"SHUTDOWN_GRACE", CFG_DURATION, 0, 300000, "10s", F(shutdown_grace_ms),
     "time for requests in flight at shutdown"},
    {"TRUSTED_PROXIES", CFG_STR, 0, 1024, "", F(trusted_proxies),
     "addresses/CIDRs of proxies whose Forwarded / X-Forwarded-For is believed (none)"},
    {"CORS_ALLOWED_ORIGINS", CFG_STR, 0, 2048, "", F(cors_allowed_origins),
     "comma list of browser origins allowed by CORS, e.g. https://shop.example (none: no CORS)"},
    {"LOG_LEVEL", CFG_STR, 1, 16, "info", F(log_level), "debug | info | warn | error"},
};

#define N_CONFIG (sizeof(config_table) / sizeof(config_table[0]))

/* A PEM file's text (malloc'd), or NULL with err naming the variable. */
static char *read_key_file(const char *var, const char *path, err_t *err)
{
    if (path[0] == '\0') {
        err_set(err, ERR_INVALID, "%s: required with JWT_ALG=ES256", var);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        err_set(err, ERR_INVALID, "%s: cannot open %s: %s", var, path, strerror(errno));
        return NULL;
    }
    char *buf = calloc(1, KEY_FILE_MAX + 1);
    if (buf == NULL)
        abort();
    size_t n = fread(buf, 1, KEY_FILE_MAX + 1, f);
    fclose(f);
    if (n == 0 || n > KEY_FILE_MAX) {
        err_set(err, ERR_INVALID, "%s: %s is empty or too large", var, path);
        free(buf);
        return NULL;
    }
    return buf;
}

static jwt_keys_t *load_keys(const gateway_config_t *c, err_t *err)
{
    char *priv = NULL, *pub = NULL;
    jwt_keys_t *k = NULL;
    if (strcmp(c->jwt_alg, JWT_ALG_NAME_ES256) == 0) {
        priv = read_key_file("JWT_PRIVATE_KEY_FILE", c->jwt_private_key_file, err);
        pub =
            priv != NULL ? read_key_file("JWT_PUBLIC_KEY_FILE", c->jwt_public_key_file, err) : NULL;
        if (pub == NULL)
            goto out;
    }
    k = jwt_keys_new(&(jwt_keys_opts_t){.alg = c->jwt_alg,
                                        .secret = c->jwt_secret,
                                        .private_pem = priv,
                                        .public_pem = pub,
                                        .issuer = c->jwt_issuer,
                                        .audience = c->jwt_audience,
                                        .ttl_s = c->access_ttl_ms / 1000},
                     err);
out:
    free(priv);
    free(pub);
    return k;
}

static int load_config(gateway_config_t *c, err_t *err)
{
    if (cfg_load(config_table, N_CONFIG, c, err) < 0 ||
        cfg_load(otel_cfg_table, otel_cfg_n, &c->otel, err) < 0 ||
        cfg_load(rpc_tls_cfg_table, rpc_tls_cfg_n, &c->tls, err) < 0)
        return err->code;
    log_level_t level;
    if (log_level_parse(c->log_level, &level) < 0)
        return err_set(err, ERR_INVALID,
                       "LOG_LEVEL: must be debug, info, warn or error, got \"%s\"", c->log_level);
    if (c->access_ttl_ms % 1000 != 0)
        return err_set(err, ERR_INVALID, "ACCESS_TOKEN_TTL: whole seconds only");
    log_init("gateway", level);
    metrics_process_init("gateway");
    cfg_log(config_table, N_CONFIG, c);
    cfg_log(otel_cfg_table, otel_cfg_n, &c->otel);
    cfg_log(rpc_tls_cfg_table, rpc_tls_cfg_n, &c->tls);
    return 0;
}

/* Everything the handlers share; 0 or the error that stops start-up. */
static int gateway_open(gateway_t *g, const gateway_config_t *c, err_t *err)
{
    g->cfg = c;
    if (!(g->keys = load_keys(c, err)))
        return err->code;
    if (!(g->proxies = forwarded_trust_parse(c->trusted_proxies, err)))
        return err->code;
    if (!(g->redis = redis_pool_new(c->redis_url, c->redis_password, (int)c->redis_pool_size,
                                    c->upstream_timeout_ms, err)))
        return err->code;
    if (c->redis_sentinels[0] != '\0' &&
        redis_pool_use_sentinels(g->redis, c->redis_sentinels, c->redis_master_name,
                                 c->redis_replica_wait_ms, err) < 0)
        return err->code;
    g->sessions = session_store_new(g->redis, c->redis_prefix, c->refresh_ttl_ms);
    g->auth = auth_new(&(auth_opts_t){.keys = g->keys,
                                      .redis = g->redis,
                                      .store = g->sessions,
                                      .redis_prefix = c->redis_prefix,
                                      .user_request_limit = c->user_request_limit,
                                      .user_window_ms = c->user_window_ms});
    /* The TLS files are read once, here: a missing or bad one is a bad setting. */
    if (rpc_tls_setup(&c->tls, &g->tls, err) < 0)
        return err->code;
    return upstream_open(g->upstream, c->upstream_addr, g->tls, err);
}

static void gateway_close(gateway_t *g)
{
    upstream_close(g->upstream);
    auth_free(g->auth);
    session_store_free(g->sessions);
    redis_pool_free(g->redis);
    jwt_keys_free(g->keys);
    forwarded_trust_free(g->proxies);
    rpc_tls_free(g->tls);
}

static void print_usage(FILE *out)
{
    fprintf(out, "usage: gateway                       serve (settings from the environment)\n"
                 "       gateway --help                this text and every setting\n");
}

/* --help: the usage and every setting with its default, on stdout; reads nothing,
 * connects to nothing. 0, or 1 when stdout could not be written. */
static int print_help(void)
{
    print_usage(stdout);
    printf("\nsettings (environment variables; NAME=default, or NAME (required)):\n");
    int rc = cfg_usage_print(stdout, config_table, N_CONFIG);
    printf("\ngRPC mutual TLS, towards the services (docs/trust.md):\n");
    rc |= cfg_usage_print(stdout, rpc_tls_cfg_table, rpc_tls_cfg_n);
    printf("\ntraces (OpenTelemetry's variables):\n");
    rc |= cfg_usage_print(stdout, otel_cfg_table, otel_cfg_n);
    return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return print_help();
    if (argc > 1) {
        print_usage(stderr);
        return 2;
    }
    /* Stop signals are taken by sigwait below; every thread inherits the mask. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    gateway_config_t cfg;
    err_t err = ERR_INIT;
    if (load_config(&cfg, &err) < 0) {
        fprintf(stderr, "gateway: %s\n", err.msg);
        return 2;
    }
    gateway_t app = {0};
    http_server_t *srv = NULL;
    int status = 1;
    /* Before any thread: the exporter's channel initialises gRPC (rpc.h). */
    if (otel_start(&cfg.otel, "gateway", &err) < 0) {
        fprintf(stderr, "gateway: %s\n", err.msg);
        return 2;
    }
    if (gateway_open(&app, &cfg, &err) < 0) {
        status = err.code == ERR_INVALID ? 2 : 1;
        goto fail;
    }
    size_t n_routes;
    const router_route_t *routes = routes_table(&n_routes);
    srv = http_server_start(
        &(http_server_opts_t){.addr = cfg.addr,
                              .threads = (int)cfg.http_threads,
                              .max_connections = (int)cfg.max_connections,
                              .connection_timeout_s = (int)(cfg.connection_timeout_ms / 1000),
                              .body_limit = (size_t)cfg.body_limit,
                              .routes = routes,
                              .n_routes = n_routes,
                              .upstream_timeout_ms = cfg.upstream_timeout_ms,
                              .auth = app.auth,
                              .proxies = app.proxies,
                              .app = &app,
                              .cors_origins = cfg.cors_allowed_origins},
        &err);
    if (srv == NULL) {
        status = err.code == ERR_INVALID ? 2 : 1; /* a bad setting, as load_config's */
        goto fail;
    }
    LOG_INFO("serving", LOG_STR("addr", cfg.addr), LOG_INT("port", http_server_port(srv)));
    int sig;
    sigwait(&signals, &sig);
    LOG_INFO("draining", LOG_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    http_server_stop(srv, cfg.shutdown_grace_ms);
    gateway_close(&app);
    otel_stop();
    LOG_INFO("stopped");
    return 0;
fail:
    LOG_ERR("cannot start", LOG_STR("error", err.msg), LOG_STR("code", err_code_name(err.code)));
    fprintf(stderr, "gateway: %s\n", err.msg);
    gateway_close(&app);
    otel_stop();
    return status;
}
