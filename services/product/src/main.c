/*
 * product-svc: catalog, inventory and stock reservations (docs/architecture.md §3, §4).
 *
 * Everything a service process does — settings, admin HTTP, migrations, the outbox
 * relay, the saga consumer, the gRPC server, the drain on SIGTERM — is svc_main's
 * (common/svc.h); this file only describes product-svc. It has no settings of its
 * own beyond the common ones (GRPC_ADDR, ADMIN_ADDR, DATABASE_URL, DB_POOL_SIZE,
 * KAFKA_BROKERS, LOG_LEVEL, SHUTDOWN_GRACE, STARTUP_TIMEOUT).
 */
#include "common/svc.h"
#include "product.h"

extern const db_migration_set_t product_migrations;

static const char *const product_topics[] = {PRODUCT_TOPIC_ORDERS};

int main(int argc, char **argv)
{
    const svc_def_t def = {
        .name = "product",
        .grpc_port = 50052,
        .admin_port = 8082,
        .default_db_url = "postgresql://product:product@127.0.0.1:5434/product",
        .service = product_rpc_service,
        .migrations = &product_migrations,
        .topics = product_topics,
        .n_topics = sizeof(product_topics) / sizeof(product_topics[0]),
        .routes = product_saga_routes,
        .n_routes = product_saga_n_routes,
    };
    return svc_main(&def, argc, argv);
}
