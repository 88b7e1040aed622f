/*
 * rpc_codec: protobuf-c messages ⇄ gRPC byte buffers, the google.rpc.Status of
 * grpc-status-details-bin, metadata validation and per-code metric lookup, shared by
 * the server and the client.
 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_internal.h"
#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <openssl/crypto.h>

/* gRPC's default c-ares resolver (c-ares 1.18.1 in Debian 12) leaks memory on every
 * lookup of a name from /etc/hosts (c-ares/c-ares#439) and ignores nsswitch. The
 * native resolver is glibc's getaddrinfo, as for the rest of the process. gRPC reads
 * the variable once, at its first initialisation, hence before grpc_init. */
/* OpenSSL frees its global state from an atexit handler; gRPC's own threads may still
 * be in a TLS handshake when the process returns from main() (a channel's connection
 * attempt outlives the channel), and read that state after it was freed (a crash at
 * exit, seen in the gateway under ASan). OpenSSL is told, before anyone initialises
 * it, to leave its state to the end of the process. */
static void rpc_choose_resolver(void)
{
    setenv("GRPC_DNS_RESOLVER", "native", 0);
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
}

void rpc__grpc_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, rpc_choose_resolver);
    grpc_init();
}

grpc_byte_buffer *rpc__pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

ProtobufCMessage *rpc__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                              arena_t *a)
{
    grpc_byte_buffer_reader reader;
    /* The reader undoes any message compression the peer applied. */
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    /* protobuf-c copies strings and bytes out of the input, so the slice can go. */
    ProtobufCMessage *msg = protobuf_c_message_unpack(
        desc, arena_protobuf_allocator(a), GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return msg;
}

/* google.protobuf.Any's type URL of a google.rpc.BadRequest. */
#define RPC_BAD_REQUEST_TYPE_URL "type.googleapis.com/google.rpc.BadRequest"

grpc_slice rpc__status_details_slice(const err_t *err, grpc_status_code code)
{
    Google__Rpc__BadRequest__FieldViolation fv[ERR_FIELDS_MAX];
    Google__Rpc__BadRequest__FieldViolation *fv_ptrs[ERR_FIELDS_MAX];
    Google__Rpc__BadRequest bad = GOOGLE__RPC__BAD_REQUEST__INIT;
    size_t n = err->n_fields < ERR_FIELDS_MAX ? err->n_fields : ERR_FIELDS_MAX;
    for (size_t i = 0; i < n; i++) {
        google__rpc__bad_request__field_violation__init(&fv[i]);
        /* protobuf-c's string fields are not const, but packing only reads them. */
        fv[i].field = (char *)err->fields[i].field;
        fv[i].description = (char *)err->fields[i].description;
        fv_ptrs[i] = &fv[i];
    }
    bad.n_field_violations = n;
    bad.field_violations = fv_ptrs;
    grpc_slice bad_bytes = grpc_slice_malloc(google__rpc__bad_request__get_packed_size(&bad));
    google__rpc__bad_request__pack(&bad, GRPC_SLICE_START_PTR(bad_bytes));

    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = RPC_BAD_REQUEST_TYPE_URL;
    any.value = (ProtobufCBinaryData){.len = GRPC_SLICE_LENGTH(bad_bytes),
                                      .data = GRPC_SLICE_START_PTR(bad_bytes)};
    Google__Protobuf__Any *details[] = {&any};
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    status.code = (int32_t)code;
    status.message = (char *)err->msg;
    status.n_details = 1;
    status.details = details;
    grpc_slice slice = grpc_slice_malloc(google__rpc__status__get_packed_size(&status));
    google__rpc__status__pack(&status, GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(bad_bytes);
    return slice;
}

/* Adds the violations of one Any of a Status when it is a google.rpc.BadRequest. */
static void rpc_bad_request_parse(const Google__Protobuf__Any *any, err_t *err)
{
    if (any->type_url == NULL || strcmp(any->type_url, RPC_BAD_REQUEST_TYPE_URL) != 0)
        return;
    Google__Rpc__BadRequest *bad =
        google__rpc__bad_request__unpack(NULL, any->value.len, any->value.data);
    if (bad == NULL)
        return;
    for (size_t i = 0; i < bad->n_field_violations; i++) {
        const Google__Rpc__BadRequest__FieldViolation *fv = bad->field_violations[i];
        err_field_add(err, fv->field, "%s", fv->description);
    }
    google__rpc__bad_request__free_unpacked(bad, NULL);
}

void rpc__status_details_parse(grpc_slice value, err_t *err)
{
    Google__Rpc__Status *status =
        google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(value), GRPC_SLICE_START_PTR(value));
    if (status == NULL)
        return;
    for (size_t i = 0; i < status->n_details; i++)
        rpc_bad_request_parse(status->details[i], err);
    google__rpc__status__free_unpacked(status, NULL);
}

bool rpc__slice_eq(grpc_slice s, const char *str)
{
    size_t n = strlen(str);
    return GRPC_SLICE_LENGTH(s) == n && memcmp(GRPC_SLICE_START_PTR(s), str, n) == 0;
}

bool rpc__metadata_key_ok(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || strncmp(key, "grpc-", 5) == 0 || (n >= 4 && strcmp(key + n - 4, "-bin") == 0))
        return false;
    return grpc_header_key_is_legal(grpc_slice_from_static_string(key)) != 0;
}

bool rpc__metadata_value_ok(const char *value)
{
    return grpc_header_nonbin_value_is_legal(grpc_slice_from_static_string(value)) != 0;
}

metrics_counter_t *rpc__code_counter(_Atomic(metrics_counter_t *) slots[RPC__N_CODES],
                                     const char *name, const char *help, const char *method,
                                     grpc_status_code status)
{
    int code = (int)status >= 0 && (int)status < RPC__N_CODES ? (int)status : GRPC_STATUS_UNKNOWN;
    metrics_counter_t *c = atomic_load_explicit(&slots[code], memory_order_acquire);
    if (c != NULL)
        return c;
    /* Two threads may both look it up: the registry returns the same pointer. */
    c = metrics_counter(name, help,
                        (const char *[]){"method", method, "code",
                                         err_code_name(err_from_grpc_status(code)), NULL});
    atomic_store_explicit(&slots[code], c, memory_order_release);
    return c;
}

void rpc__code_counters_init(_Atomic(metrics_counter_t *) slots[RPC__N_CODES], const char *name,
                             const char *help, const char *method)
{
    static const grpc_status_code codes[] = {
        GRPC_STATUS_OK,       GRPC_STATUS_UNKNOWN,     GRPC_STATUS_DEADLINE_EXCEEDED,
        GRPC_STATUS_INTERNAL, GRPC_STATUS_UNAVAILABLE, GRPC_STATUS_DATA_LOSS};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        rpc__code_counter(slots, name, help, method, codes[i]);
}
