/*
 * order-svc: order lifecycle; initiator of the choreography saga (docs/architecture.md §3, §4).
 *
 * Everything a service process does — settings, admin HTTP, migrations, the outbox
 * relay, the saga consumer, the gRPC server, the drain on SIGTERM — is svc_main's
 * (common/svc.h); this file describes order-svc and owns its two extras: the channel
 * to product-svc (CreateOrder prices lines with BatchGetProducts) and the sweeper
 * thread (orders PENDING past SAGA_TIMEOUT are cancelled, idempotency keys older than
 * IDEMPOTENCY_RETENTION are deleted).
 *
 * Settings of its own, besides the common ones (GRPC_ADDR default 0.0.0.0:50051,
 * ADMIN_ADDR default 0.0.0.0:8081, DATABASE_URL, DB_POOL_SIZE, KAFKA_BROKERS,
 * LOG_LEVEL, SHUTDOWN_GRACE, STARTUP_TIMEOUT):
 *   PRODUCT_ADDR    product-svc gRPC target ("host:port" or "a:1,b:2")
 *                   default 127.0.0.1:50052
 *   SAGA_TIMEOUT    an order still PENDING this long is cancelled (TIMEOUT)
 *                   default 30s (1s..24h)
 *   SWEEP_INTERVAL  how often the sweeper looks for such orders and keys
 *                   default 1s (10ms..1h)
 *   IDEMPOTENCY_RETENTION  how long CreateOrder's Idempotency-Keys are kept: a repeat
 *                   within it replays the order, afterwards (the key is deleted within
 *                   a SWEEP_INTERVAL) the same key creates a new order
 *                   default 24h (1s..720h)
 */
#include <stddef.h>

#include "common/svc.h"
#include "fleet.h"
#include "order.h"

extern const db_migration_set_t order_migrations;

static const char *const order_topics[] = {ORDER_TOPIC_INVENTORY, ORDER_TOPIC_PAYMENTS};

static order_cfg_t order_cfg;
static order_ctx_t order_ctx;

static const cfg_entry_t order_cfg_table[] = {
    {"PRODUCT_ADDR", CFG_STR, 1, 1024, FLEET_PRODUCT_ADDR, offsetof(order_cfg_t, product_addr),
     "product-svc gRPC target (host:port, or a comma-separated list)"},
    {"SAGA_TIMEOUT", CFG_DURATION, 1000, 86400000, "30s", offsetof(order_cfg_t, saga_timeout_ms),
     "cancel orders still PENDING after this long (reason TIMEOUT)"},
    {"SWEEP_INTERVAL", CFG_DURATION, 10, 3600000, "1s", offsetof(order_cfg_t, sweep_interval_ms),
     "how often the sweeper looks for timed-out orders and expired idempotency keys"},
    {"IDEMPOTENCY_RETENTION", CFG_DURATION, 1000, 2592000000, "24h",
     offsetof(order_cfg_t, idem_retention_ms),
     "keep CreateOrder's idempotency keys this long, then delete them (a reused key then "
     "creates a new order)"},
};

static int order_init(svc_t *s, err_t *err)
{
    order_ctx.cfg = &order_cfg;
    order_ctx.product =
        rpc_channel_new(order_cfg.product_addr, &(rpc_channel_opts_t){.tls = svc_tls(s)}, err);
    if (!order_ctx.product)
        return err->code;
    order_ctx.sweeper = order_sweeper_start(svc_pool(s), &order_cfg, err);
    if (!order_ctx.sweeper)
        return err->code;
    svc_user_set(s, &order_ctx);
    return 0;
}

/* Runs after the gRPC server and the consumer stopped: nothing uses the channel any
 * more; the sweeper finishes the sweep in hand. */
static void order_fini(svc_t *s)
{
    order_sweeper_stop(order_ctx.sweeper);
    order_ctx.sweeper = NULL;
    rpc_channel_free(order_ctx.product);
    order_ctx.product = NULL;
}

int main(int argc, char **argv)
{
    const svc_def_t def = {
        .name = "order",
        .grpc_port = FLEET_ORDER_GRPC_PORT,
        .admin_port = FLEET_ORDER_ADMIN_PORT,
        .default_db_url = FLEET_ORDER_DB_URL,
        .service = order_rpc_service,
        .migrations = &order_migrations,
        .topics = order_topics,
        .n_topics = sizeof(order_topics) / sizeof(order_topics[0]),
        .routes = order_saga_routes,
        .n_routes = order_saga_n_routes,
        .config_table = order_cfg_table,
        .n_config = sizeof(order_cfg_table) / sizeof(order_cfg_table[0]),
        .config = &order_cfg,
        .init = order_init,
        .fini = order_fini,
    };
    return svc_main(&def, argc, argv);
}
