/*
 * gateway: the program's settings and the shared state every request handler
 * reaches through routes_app() (built once in main, read-only afterwards; the
 * HTTP layer holds it as an opaque pointer).
 */
#ifndef GATEWAY_GATEWAY_H
#define GATEWAY_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "auth_jwt.h"
#include "common/otel.h"
#include "common/rpc.h"
#include "forwarded.h"
#include "redis_pool.h"
#include "session.h"
#include "upstream.h"

/* Every setting, filled from the environment by main's cfg table. */
typedef struct gateway_config {
    const char *addr;
    const char *redis_url;
    const char *redis_password; /* "" = the URL's, if any */
    const char *redis_prefix;
    int64_t redis_pool_size;
    const char *redis_sentinels;           /* "" = none: REDIS_URL's server */
    const char *redis_master_name;         /* the master's name at the Sentinels */
    int64_t redis_replica_wait_ms;         /* WAIT after a session write (with Sentinels) */
    const char *upstream_addr[UPSTREAM_N]; /* by upstream_id_t: ORDER_ADDR, ... */
    const char *jwt_alg;
    const char *jwt_secret;
    const char *jwt_private_key_file;
    const char *jwt_public_key_file;
    const char *jwt_issuer;
    const char *jwt_audience;
    int64_t access_ttl_ms;
    int64_t refresh_ttl_ms;
    int64_t upstream_timeout_ms;
    int64_t body_limit;
    int64_t http_threads;
    int64_t max_connections;
    int64_t connection_timeout_ms;
    int64_t login_ip_limit;
    int64_t login_account_limit;
    int64_t register_ip_limit;
    int64_t register_account_limit;
    int64_t auth_window_ms;
    int64_t user_request_limit;
    int64_t user_window_ms;
    int64_t shutdown_grace_ms;
    const char *trusted_proxies;
    const char *cors_allowed_origins; /* comma list; "" = no CORS */
    const char *log_level;
    otel_cfg_t otel;   /* OTEL_* (otel.h) */
    rpc_tls_cfg_t tls; /* TLS_*, GRPC_PLAINTEXT (rpc.h) */
} gateway_config_t;

typedef struct gateway {
    const gateway_config_t *cfg;
    jwt_keys_t *keys;
    forwarded_trust_t *proxies; /* TRUSTED_PROXIES */
    redis_pool_t *redis;
    session_store_t *sessions;
    auth_t *auth;                        /* the policy over keys, sessions and the user budget */
    rpc_channel_t *upstream[UPSTREAM_N]; /* by upstream_id_t */
    rpc_tls_t *tls;                      /* the gateway's identity; NULL: plaintext */
} gateway_t;

#endif
