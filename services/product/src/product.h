/*
 * product-svc: what main.c, the RPC handlers and the saga handlers share.
 */
#ifndef PRODUCT_H
#define PRODUCT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "common/saga.h"

/* The topic product-svc consumes and the one it produces to (docs/architecture.md §4). */
#define PRODUCT_TOPIC_ORDERS    "order.events"
#define PRODUCT_TOPIC_INVENTORY "inventory.events"

/* product_rpc_service: shop.product.v1.ProductService with its handlers
 * (product_rpc.c). The handlers expect rpc_call_ctx() to be the svc_t. */
extern ProtobufCService *const product_rpc_service;

/* product_saga_routes: OrderCreated, OrderConfirmed and OrderCancelled
 * (product_saga.c). The handlers expect their ctx to be the svc_t. */
extern const saga_route_t product_saga_routes[];
extern const size_t product_saga_n_routes;

#endif
