/*
 * err: the one error type of the fleet.
 *
 * Functions return 0 or a negative ERR_* code; pointer-returning functions return
 * NULL. Either way they fill an err_t the caller owns, with a message and, for
 * validation failures, per-field violations. Reporting never allocates: every buffer
 * is fixed and long text is truncated.
 *
 * The codes are the gRPC status codes, negated, so that a service's domain error
 * crosses the RPC boundary without a table (err_to_grpc_status) and the gateway maps
 * them to HTTP once (docs/architecture.md §2).
 *
 * Who may read the message. err_set writes a message for the log: it may carry
 * SQLSTATEs, library text, hosts, ids. Only a message written for the client
 * (err_set_client, and err_field_add's "invalid request" with its violations) is
 * `for_client`. At each boundary towards a client (the gRPC server's rpc_call_fail,
 * the gateway's problem+json) err_redact turns every other error into a generic one
 * and the original goes to the log with the request id, so no SQL, SQLSTATE or
 * library text reaches a client, whatever the status, and no 4xx comes from a
 * database error unless a handler mapped it on purpose (a unique violation rewritten
 * with err_set_client as ALREADY_EXISTS "sku already exists").
 */
#ifndef COMMON_ERR_H
#define COMMON_ERR_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ERR_OK = 0,
    ERR_CANCELLED = -1,
    ERR_UNKNOWN = -2,
    ERR_INVALID = -3, /* INVALID_ARGUMENT */
    ERR_TIMEOUT = -4, /* DEADLINE_EXCEEDED */
    ERR_NOT_FOUND = -5,
    ERR_CONFLICT = -6,     /* ALREADY_EXISTS */
    ERR_PERMISSION = -7,   /* PERMISSION_DENIED */
    ERR_EXHAUSTED = -8,    /* RESOURCE_EXHAUSTED */
    ERR_PRECONDITION = -9, /* FAILED_PRECONDITION */
    ERR_ABORTED = -10,     /* ABORTED: retry the whole operation */
    ERR_RANGE = -11,       /* OUT_OF_RANGE */
    ERR_UNIMPLEMENTED = -12,
    ERR_INTERNAL = -13,
    ERR_UNAVAILABLE = -14, /* a dependency is down: retry later */
    ERR_DATA_LOSS = -15,
    ERR_UNAUTHENTICATED = -16,
} err_code_t;

#define ERR_MSG_MAX    256
#define ERR_FIELD_MAX  96
#define ERR_DESC_MAX   160
#define ERR_FIELDS_MAX 16

typedef struct err_field {
    char field[ERR_FIELD_MAX];      /* path, e.g. "lines[2].quantity" */
    char description[ERR_DESC_MAX]; /* lower-case, no trailing period */
} err_field_t;

typedef struct err {
    int code;              /* ERR_OK or a negative err_code_t */
    char msg[ERR_MSG_MAX]; /* what went wrong: for the log, and for the client if for_client */
    bool for_client;       /* msg and fields were written for the client (see above) */
    size_t n_fields;
    err_field_t fields[ERR_FIELDS_MAX];
} err_t;

/* clang-format off */
#define ERR_INIT {.code = ERR_OK}
/* clang-format on */

/* err_set: sets code and message (printf format) and returns code, so callers can
 * `return err_set(err, ERR_INTERNAL, "cannot start the sweeper (error %d)", rc);`.
 * The message is for the log only (for_client false). err may be NULL. */
int err_set(err_t *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* err_set_client: err_set for a message written for the client, a deliberate
 * validation or business answer ("order not found", "sku already exists"): it
 * crosses the service and gateway boundaries as it is (for_client true). Lower-case,
 * no trailing period, nothing the caller did not send or may not know. */
int err_set_client(err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* err_field_add: appends a field violation (silently dropped past ERR_FIELDS_MAX) and
 * makes the error ERR_INVALID with the message "invalid request", for the client,
 * unless a code is already set (then for_client stays as it was). Descriptions are
 * written for the client. Returns err->code. err may be NULL. */
int err_field_add(err_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* err_clear: back to ERR_OK with no message and no fields. */
void err_clear(err_t *err);

/* err_redact: err as a client may see it, in place. A for_client error is left as it
 * is. Any other keeps only a code the client can act on, with a fixed message and no
 * field violations:
 *   UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED → UNAVAILABLE "service unavailable, retry later"
 *   DEADLINE_EXCEEDED                        → DEADLINE_EXCEEDED "deadline exceeded"
 *   CANCELLED                                → CANCELLED "cancelled"
 *   anything else (INTERNAL, and any code a database error took: INVALID_ARGUMENT for
 *   22xxx, ALREADY_EXISTS for an unmapped 23505, ...) → INTERNAL "internal error"
 * The result is for_client. Returns true if err was rewritten: the caller logs the
 * original first. err may be NULL (false). */
bool err_redact(err_t *err);

/* err_code_name: "NOT_FOUND", ... for a code (also for unknown ones: "UNKNOWN"). */
const char *err_code_name(int code);

/* err_to_grpc_status / err_from_grpc_status: the numeric gRPC status for a code and
 * back (0 ⇄ ERR_OK; anything outside the table ⇄ UNKNOWN). */
int err_to_grpc_status(int code);
int err_from_grpc_status(int status);

/* err_is_transient: true for failures worth retrying as they are (UNAVAILABLE,
 * ABORTED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED). */
int err_is_transient(int code);

#endif
