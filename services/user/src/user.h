/*
 * user-svc: what main.c, the RPC handlers and the saga handlers share.
 */
#ifndef USER_H
#define USER_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/saga.h"
#include "common/svc.h"
#include "user_password.h"

/* The topics user-svc consumes and the one it produces to (docs/architecture.md §4). */
#define USER_TOPIC_ORDERS    "order.events"
#define USER_TOPIC_INVENTORY "inventory.events"
#define USER_TOPIC_PAYMENTS  "payment.events"

/* The one currency of wallets and payments for now (common.proto). */
#define USER_CURRENCY "USD"

/* user-svc's own settings (main.c's table). */
typedef struct user_config {
    int64_t hash_memory_kib;  /* PASSWORD_HASH_MEMORY_KIB, argon2id m */
    int64_t hash_iterations;  /* PASSWORD_HASH_ITERATIONS, argon2id t */
    int64_t hash_concurrency; /* PASSWORD_HASH_CONCURRENCY: hashes running at once */
} user_config_t;

/* The service's state, svc_user(s) once main.c's init hook ran. */
typedef struct user_ctx {
    user_password_t *passwords;
} user_ctx_t;

/* user_rpc_service: shop.user.v1.UserService with its handlers (user_rpc.c). The
 * handlers expect rpc_call_ctx() to be the svc_t and svc_user() a user_ctx_t. */
extern ProtobufCService *const user_rpc_service;

/* user_saga_routes: StockReserved and OrderCancelled (user_saga.c). The handlers do
 * not use their ctx. */
extern const saga_route_t user_saga_routes[];
extern const size_t user_saga_n_routes;

/* Validation shared by CreateUser and the create-admin command (user_rpc.c). Each
 * adds a field violation (field "email", "password", "display_name") to err and
 * returns err->code; nothing is allocated on failure. */

/* user_rpc_check_email: the email with surrounding blanks removed, into *out (in `a`,
 * case kept): one "@", no spaces or control characters, at most 254 characters. */
int user_rpc_check_email(arena_t *a, const char *email, const char **out, err_t *err);

/* user_rpc_check_password: 8..128 characters, counted as Unicode code points of
 * well-formed UTF-8 (so "pässwörd" is 8 characters, 10 bytes). */
int user_rpc_check_password(const char *password, err_t *err);

/* user_rpc_check_display_name: surrounding blanks removed into *out (in `a`), then
 * 1..100 characters of UTF-8 without control characters. */
int user_rpc_check_display_name(arena_t *a, const char *name, const char **out, err_t *err);

#endif
