/*
 * problem: RFC 9457 bodies and the gRPC → HTTP status table (problem.h).
 */
#include "problem.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "json_pb.h"

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
    const char *title = problem_title(status);
    json_t *p =
        json_pack("{s:s, s:s, s:i, s:o}", "type", "about:blank", "title", title, "status", status,
                  "detail", json_pb_string(detail != NULL && detail[0] != '\0' ? detail : title));
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
    *status = problem_http_status(code, precondition_status);
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
