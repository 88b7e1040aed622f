/*
 * rpc_internal: what rpc_server.c and rpc_client.c share: completion-queue tags,
 * the protobuf ⇄ byte buffer codec and metadata helpers (rpc_codec.c). Every
 * server and channel holds a grpc_init reference for its life (rpc__grpc_init; the
 * library counts them), so the last one freed releases gRPC. Only rpc_*.c include this header, since it pulls in <grpc/grpc.h>.
 */
#ifndef COMMON_RPC_INTERNAL_H
#define COMMON_RPC_INTERNAL_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/metrics.h"
#include "common/rpc.h"

/* Every tag posted to a completion queue starts with this: the worker that pulls it
 * calls step(tag, ok) and the tag's owner decides what happens next. */
typedef struct rpc__tag rpc__tag_t;
struct rpc__tag {
    void (*step)(rpc__tag_t *tag, bool ok);
};

/* Trailing metadata key of the serialized google.rpc.Status (gRPC's rich error model). */
#define RPC__STATUS_DETAILS_KEY "grpc-status-details-bin"

/* gRPC status codes run 0..16: one counter per code and method. */
#define RPC__N_CODES 17

/* rpc__grpc_init: grpc_init, choosing gRPC's native DNS resolver (getaddrinfo) on
 * first use unless GRPC_DNS_RESOLVER says otherwise. Pair with grpc_shutdown. */
void rpc__grpc_init(void);

/* rpc__pack: msg serialized into a new byte buffer (the caller destroys it). */
grpc_byte_buffer *rpc__pack(const ProtobufCMessage *msg);

/* rpc__unpack: the bytes of bb (decompressed) unpacked as `desc` into the arena, or
 * NULL when they are not a valid message. */
ProtobufCMessage *rpc__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                              arena_t *a);

/* rpc__status_details_slice: a serialized google.rpc.Status {code, err->msg, details:
 * one Any holding a google.rpc.BadRequest with err's field violations}; `code` is the
 * grpc-status sent with it (the caller unrefs the slice). */
grpc_slice rpc__status_details_slice(const err_t *err, grpc_status_code code);

/* rpc__status_details_parse: adds to err the field violations of every
 * google.rpc.BadRequest in the google.rpc.Status serialized in `value`; other details,
 * and a value that does not decode, add nothing (it is detail, never a failure). */
void rpc__status_details_parse(grpc_slice value, err_t *err);

/* rpc__slice_eq: slice s holds exactly the C string str. */
bool rpc__slice_eq(grpc_slice s, const char *str);

/* rpc__metadata_key_ok / rpc__metadata_value_ok: what gRPC accepts for a text
 * metadata entry we send (lower-case key, not "grpc-" or "-bin"; printable value). */
bool rpc__metadata_key_ok(const char *key);
bool rpc__metadata_value_ok(const char *value);

/* rpc__code_counter: the counter `name`{method, code} cached in slots[code]
 * (looked up once per code; the registry lookup takes a lock). */
metrics_counter_t *rpc__code_counter(_Atomic(metrics_counter_t *) slots[RPC__N_CODES],
                                     const char *name, const char *help, const char *method,
                                     grpc_status_code status);

#endif
