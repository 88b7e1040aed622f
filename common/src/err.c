/*
 * err: fixed-size error reports (jansson's json_error_t). Nothing here allocates, so
 * an error can be reported even when memory has run out.
 */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_GRPC_MAX 16

/* Indexed by gRPC status (= -code). */
static const char *const err_names[ERR_GRPC_MAX + 1] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

/* When vsnprintf cut the text, drop a trailing incomplete UTF-8 sequence so the
 * message stays valid UTF-8 for the JSON log and problem+json bodies. */
static void err_trim_utf8(char *buf, size_t len)
{
    size_t i = len;
    /* Walk back over continuation bytes (10xxxxxx) to the lead byte, at most 3. */
    while (i > 0 && len - i < 4 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)buf[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && len - (i - 1) < need)
        buf[i - 1] = '\0';
}

__attribute__((format(printf, 3, 0))) static void err_vformat(char *buf, size_t size,
                                                              const char *fmt, va_list ap)
{
    int n = vsnprintf(buf, size, fmt, ap);
    if (n < 0)
        buf[0] = '\0';
    else if ((size_t)n >= size)
        err_trim_utf8(buf, size - 1);
}

int err_set(err_t *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    err->for_client = false;
    va_list ap;
    va_start(ap, fmt);
    err_vformat(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int err_set_client(err_t *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    err->for_client = true;
    va_list ap;
    va_start(ap, fmt);
    err_vformat(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int err_field_add(err_t *err, const char *field, const char *fmt, ...)
{
    if (err == NULL)
        return ERR_INVALID;
    if (err->code == ERR_OK) {
        err->code = ERR_INVALID;
        err->for_client = true;
        snprintf(err->msg, sizeof(err->msg), "invalid request");
    }
    if (err->n_fields >= ERR_FIELDS_MAX)
        return err->code;
    err_field_t *f = &err->fields[err->n_fields++];
    size_t flen = strlen(field);
    if (flen >= sizeof(f->field)) {
        flen = sizeof(f->field) - 1;
        memcpy(f->field, field, flen);
        f->field[flen] = '\0';
        err_trim_utf8(f->field, flen);
    } else {
        memcpy(f->field, field, flen + 1);
    }
    va_list ap;
    va_start(ap, fmt);
    err_vformat(f->description, sizeof(f->description), fmt, ap);
    va_end(ap);
    return err->code;
}

void err_clear(err_t *err)
{
    if (err == NULL)
        return;
    err->code = ERR_OK;
    err->msg[0] = '\0';
    err->for_client = false;
    err->n_fields = 0;
}

bool err_redact(err_t *err)
{
    if (err == NULL || err->for_client)
        return false;
    int code = err->code;
    const char *msg;
    switch (code) {
    case ERR_UNAVAILABLE:
    case ERR_EXHAUSTED: /* a busy pool: the client did not exceed anything */
    case ERR_ABORTED:   /* a transaction still conflicting after db_txn's retries */
        code = ERR_UNAVAILABLE;
        msg = "service unavailable, retry later";
        break;
    case ERR_TIMEOUT:
        msg = "deadline exceeded";
        break;
    case ERR_CANCELLED:
        msg = "cancelled";
        break;
    default:
        code = ERR_INTERNAL;
        msg = "internal error";
        break;
    }
    err_clear(err);
    err_set_client(err, code, "%s", msg);
    return true;
}

const char *err_code_name(int code)
{
    if (code > 0 || code < -ERR_GRPC_MAX)
        return "UNKNOWN";
    return err_names[-code];
}

int err_to_grpc_status(int code)
{
    if (code > 0 || code < -ERR_GRPC_MAX)
        return -ERR_UNKNOWN;
    return -code;
}

int err_from_grpc_status(int status)
{
    if (status < 0 || status > ERR_GRPC_MAX)
        return ERR_UNKNOWN;
    return -status;
}

int err_is_transient(int code)
{
    return code == ERR_UNAVAILABLE || code == ERR_ABORTED || code == ERR_TIMEOUT ||
           code == ERR_EXHAUSTED;
}
