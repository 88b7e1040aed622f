/*
 * upstream: the services the gateway calls, as one table.
 *
 * A row: the id, the name /readyz reports it under, the environment variable of
 * its address with the default, the gRPC service the gateway calls there, and the
 * setting's help text. main's settings table, the channels opened at start-up, the
 * /readyz probes and the handlers' calls (routes_call) all come from these rows, so
 * a fourth service is one more line here.
 */
#ifndef GATEWAY_UPSTREAM_H
#define GATEWAY_UPSTREAM_H

#include <protobuf-c/protobuf-c.h>

#include "common/err.h"
#include "common/rpc.h"
#include "fleet.h" /* the default addresses, from deploy/fleet.conf */

/* X(id, name, env var, default address, service descriptor, help) */
#define UPSTREAM_TABLE(X)                                                                          \
    X(ORDER, "order", "ORDER_ADDR", FLEET_ORDER_ADDR, shop__order__v1__order_service__descriptor,  \
      "order-svc: host:port (DNS, every address), a comma-separated list, or dns:///...")          \
    X(PRODUCT, "product", "PRODUCT_ADDR", FLEET_PRODUCT_ADDR,                                      \
      shop__product__v1__product_service__descriptor, "product-svc")                               \
    X(USER, "user", "USER_ADDR", FLEET_USER_ADDR, shop__user__v1__user_service__descriptor,        \
      "user-svc")

typedef enum {
#define UPSTREAM__ENUM(id, name, env, addr, svc, help) UPSTREAM_##id,
    UPSTREAM_TABLE(UPSTREAM__ENUM)
#undef UPSTREAM__ENUM
        UPSTREAM_N
} upstream_id_t;

typedef struct upstream_def {
    const char *name;                          /* "order": its key in /readyz */
    const char *env;                           /* "ORDER_ADDR" */
    const char *addr;                          /* the default address */
    const ProtobufCServiceDescriptor *service; /* what the gateway calls there */
} upstream_def_t;

/* upstream_defs: the table's rows, by id. */
extern const upstream_def_t upstream_defs[UPSTREAM_N];

/* upstream_open: a channel per row, to addrs[id] (the settings' values), into
 * out[id], with the gateway's mutual TLS (NULL: plaintext). 0, or the first failure
 * with err (channels opened so far stay in out for upstream_close). */
int upstream_open(rpc_channel_t *out[UPSTREAM_N], const char *const addrs[UPSTREAM_N],
                  const rpc_tls_t *tls, err_t *err);

/* upstream_close: frees every channel of ch (NULL entries accepted). */
void upstream_close(rpc_channel_t *ch[UPSTREAM_N]);

#endif
