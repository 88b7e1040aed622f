/*
 * problem: RFC 9457 bodies and the gRPC → HTTP status table (problem.h).
 */
#include "problem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/json_pb.h"

bool problem_key_reused(const err_t *err)
{
    if (err == NULL || err->code != ERR_CONFLICT)
        return false;
    for (size_t i = 0; i < err->n_fields; i++) {
        if (strcmp(err->fields[i].field, "idempotency_key") == 0)
            return true;
    }
    return false;
}

int problem_http_status(int code, int precondition_status)
{
    switch (code) {
    case ERR_INVALID:
    case ERR_RANGE:
        return 400;
    case ERR_UNAUTHENTICATED:
        return 401;
    case ERR_PERMISSION:
        return 403;
    case ERR_NOT_FOUND:
        return 404;
    case ERR_CONFLICT:
    case ERR_ABORTED:
        return 409;
    case ERR_PRECONDITION:
        return precondition_status == 422 ? 422 : 409;
    case ERR_EXHAUSTED:
        return 429;
    case ERR_UNAVAILABLE:
        return 503;
    case ERR_TIMEOUT:
        return 504;
    default:
        return 500;
    }
}

const char *problem_title(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

/* One class of error per status, and one more for a reused Idempotency-Key; the
 * statuses the gateway never answers have none (about:blank). */
static const struct {
    int status;
    const char *type;
} problem_types[] = {
    {400, PROBLEM_TYPE_BASE "validation"},
    {401, PROBLEM_TYPE_BASE "unauthenticated"},
    {403, PROBLEM_TYPE_BASE "forbidden"},
    {404, PROBLEM_TYPE_BASE "not-found"},
    {405, PROBLEM_TYPE_BASE "method-not-allowed"},
    {409, PROBLEM_TYPE_BASE "conflict"},
    {412, PROBLEM_TYPE_BASE "precondition-failed"},
    {413, PROBLEM_TYPE_BASE "payload-too-large"},
    {415, PROBLEM_TYPE_BASE "unsupported-media-type"},
    {422, PROBLEM_TYPE_BASE "unprocessable"},
    {429, PROBLEM_TYPE_BASE "rate-limited"},
    {500, PROBLEM_TYPE_BASE "internal"},
    {503, PROBLEM_TYPE_BASE "unavailable"},
    {504, PROBLEM_TYPE_BASE "timeout"},
};

const char *problem_type(int status)
{
    for (size_t i = 0; i < sizeof(problem_types) / sizeof(problem_types[0]); i++) {
        if (problem_types[i].status == status)
            return problem_types[i].type;
    }
    return "about:blank";
}

static const char *problem_rename(const char *field, const char *const *renames)
{
    for (; renames != NULL && renames[0] != NULL && renames[1] != NULL; renames += 2) {
        if (strcmp(field, renames[0]) == 0)
            return renames[1];
    }
    return field;
}

json_t *problem_new(int status, const char *detail, const err_t *err, const char *const *renames,
                    const char *request_id)
{
    /* Texts through json_pb_string: one that is not UTF-8 (a query parameter's name as
     * the client sent it, a message cut inside a character) would make json_pack fail
     * and lose the violation, or with the detail the whole problem. */
    bool reused = status == 422 && problem_key_reused(err);
    const char *type = reused ? PROBLEM_TYPE_KEY_REUSED : problem_type(status);
    const char *title = reused ? PROBLEM_TITLE_KEY_REUSED : problem_title(status);
    json_t *p =
        json_pack("{s:s, s:s, s:i, s:o}", "type", type, "title", title, "status", status, "detail",
                  json_pb_string(detail != NULL && detail[0] != '\0' ? detail : title));
    if (p == NULL)
        abort(); /* out of memory */
    if (request_id != NULL)
        json_object_set_new(p, "request_id", json_pb_string(request_id));
    if (err != NULL && (err->n_fields > 0 || status == 400)) {
        json_t *errors = json_array();
        for (size_t i = 0; i < err->n_fields; i++)
            json_array_append_new(
                errors, json_pack("{s:o, s:o}", "field",
                                  json_pb_string(problem_rename(err->fields[i].field, renames)),
                                  "description", json_pb_string(err->fields[i].description)));
        json_object_set_new(p, "errors", errors);
    }
    return p;
}

json_t *problem_from_err(const err_t *err, int precondition_status, const char *const *renames,
                         const char *request_id, int *status)
{
    /* What was not written for the client (err.h) is logged and answered as a 5xx
     * with a fixed sentence: upstream statuses of the gRPC library's own, and the
     * gateway's own Redis, JWT or internal failures. */
    int code = err->code;
    if (!err->for_client) {
        err_t shown = *err;
        err_redact(&shown);
        code = shown.code;
    }
    /* A reused Idempotency-Key is 422, as draft-ietf-httpapi-idempotency-key-header
     * says, not the 409 of the other ALREADY_EXISTS answers. */
    *status = err->for_client && problem_key_reused(err)
                  ? 422
                  : problem_http_status(code, precondition_status);
    if (*status < 500)
        return problem_new(*status, err->msg, err, renames, request_id);
    const char *detail = *status == 503 ? "a service is unavailable, retry later"
                         : *status == 504
                             ? "a service did not answer in time, retry later"
                             : "internal error; quote the request id when reporting it";
    if (*status == 500)
        LOG_ERR("request failed", LOG_STR("code", err_code_name(err->code)),
                LOG_STR("error", err->msg));
    else
        LOG_WARN("upstream unavailable", LOG_STR("code", err_code_name(err->code)),
                 LOG_STR("error", err->msg));
    return problem_new(*status, detail, NULL, NULL, request_id);
}
