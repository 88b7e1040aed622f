/*
 * rpc_handler: what every service's handlers share above the transport (rpc.h,
 * "handler conventions" and "the caller's context onward"): the answer, who is
 * calling, the Idempotency-Key rule and the metadata sent on to the next hop. Built
 * only on rpc.h's public calls, so it needs no gRPC.
 */
#include <string.h>

#include "common/rpc.h"
#include "common/uuid.h"

bool rpc_call_settle(rpc_call_t *call, int rc, err_t *err)
{
    if (rc == 0)
        return true;
    rpc_call_fail_hidden(call, err);
    return false;
}

void *rpc_msg_new(arena_t *a, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = arena_alloc(a, desc->sizeof_message);
    protobuf_c_message_init(desc, m);
    return m;
}

void **rpc_msg_array(arena_t *a, const void *rows, size_t n, size_t row_size,
                     void *(*build)(arena_t *a, const void *row))
{
    if (n == 0)
        return NULL;
    void **out = arena_calloc(a, n, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = build(a, (const char *)rows + i * row_size);
    return out;
}

size_t rpc_page_take(size_t n, int limit, bool *more)
{
    *more = n > (size_t)limit;
    return *more ? (size_t)limit : n;
}

int rpc_call_caller(rpc_call_t *call, rpc_caller_id_t id, rpc_caller_t *out, err_t *err)
{
    const char *user = rpc_call_user_id(call);
    if (!user || !user[0] || (id == RPC_CALLER_UUID_ID && !uuid_valid(user)))
        return err_set_client(err, ERR_UNAUTHENTICATED, "authentication required");
    out->user_id = user;
    out->admin = rpc_call_is_admin(call);
    return 0;
}

int rpc_call_require_admin(rpc_call_t *call, err_t *err)
{
    rpc_caller_t who = {0};
    if (rpc_call_caller(call, RPC_CALLER_ANY_ID, &who, err) != 0)
        return err->code;
    if (!who.admin)
        return err_set_client(err, ERR_PERMISSION, "admin role required");
    return 0;
}

int rpc_idempotency_key_check(const char *key, err_t *err)
{
    size_t n = strlen(key);
    bool ok = n >= 1 && n <= RPC_IDEMPOTENCY_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)key[i] >= 0x20 && (unsigned char)key[i] < 0x7f;
    if (!ok)
        err_field_add(err, "idempotency_key", "must be 1..128 printable ascii characters");
    return err->code;
}

int rpc_conflict_field(err_t *err, bool match, const char *msg, const char *field, const char *why)
{
    if (err->code != ERR_CONFLICT || !match)
        return err->code;
    err_clear(err);
    err_set_client(err, ERR_CONFLICT, "%s", msg);
    return err_field_add(err, field, "%s", why);
}

size_t rpc_context_metadata(const rpc_context_t *ctx, rpc_metadata_t md[RPC_CONTEXT_MD_MAX])
{
    const rpc_metadata_t all[RPC_CONTEXT_MD_MAX] = {{"x-request-id", ctx->request_id},
                                                    {"traceparent", ctx->traceparent},
                                                    {"x-user-id", ctx->user_id},
                                                    {"x-user-role", ctx->user_role}};
    size_t n = 0;
    for (size_t i = 0; i < RPC_CONTEXT_MD_MAX; i++)
        if (all[i].value)
            md[n++] = all[i];
    return n;
}

size_t rpc_call_forward(rpc_call_t *call, rpc_metadata_t md[RPC_CONTEXT_MD_MAX])
{
    /* No x-user-*: the next hop's gate refuses it from any peer but the gateway. */
    rpc_context_t cx = {.request_id = rpc_call_request_id(call),
                        .traceparent = rpc_call_next_traceparent(call)};
    return rpc_context_metadata(&cx, md);
}
