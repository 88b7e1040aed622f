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
#include "fleet.h"
#include "product.h"

extern const db_migration_set_t product_migrations;

static const char *const product_topics[] = {PRODUCT_TOPIC_ORDERS};

int main(int argc, char **argv)
{
    const svc_def_t def = {
        .name = "product",
        .grpc_port = FLEET_PRODUCT_GRPC_PORT,
        .admin_port = FLEET_PRODUCT_ADMIN_PORT,
        .default_db_url = FLEET_PRODUCT_DB_URL,
        .service = product_rpc_service,
        .migrations = &product_migrations,
        .topics = product_topics,
        .n_topics = sizeof(product_topics) / sizeof(product_topics[0]),
        .routes = product_saga_routes,
        .n_routes = product_saga_n_routes,
    };
    return svc_main(&def, argc, argv);
}
