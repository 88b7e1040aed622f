/*
 * problem: errors as RFC 9457 application/problem+json (docs/architecture.md §2, §5).
 *
 *   {"type": "https://shop-fleet.example/problems/validation", "title": "Bad Request",
 *    "status": 400, "detail": "invalid request", "request_id": "...",
 *    "errors": [{"field": "lines[1].quantity", "description": "must be an integer"}]}
 *
 * `type` names the class of error, one per status the gateway answers
 * (PROBLEM_TYPE_BASE + validation 400, unauthenticated 401, forbidden 403, not-found
 * 404, method-not-allowed 405, conflict 409, precondition-failed 412,
 * payload-too-large 413, unsupported-media-type 415, unprocessable 422, rate-limited
 * 429, internal 500, unavailable 503, timeout 504) plus idempotency-key-reused (422,
 * an Idempotency-Key reused with another request); "about:blank" for any other
 * status. The URIs are stable identifiers (listed in gateway/openapi.json and
 * README.md), not pages to fetch. `title` is the status's reason phrase, except
 * "Idempotency-Key Reused". `errors` is present (possibly empty) for 400 and
 * 409/422 answers carrying field violations, absent otherwise.
 *
 * gRPC status → HTTP, the one translation at this boundary (docs/style.md "Errors"):
 * INVALID_ARGUMENT, OUT_OF_RANGE → 400; UNAUTHENTICATED → 401;
 * PERMISSION_DENIED → 403; NOT_FOUND → 404; ALREADY_EXISTS, ABORTED → 409, except
 * ALREADY_EXISTS with a violation on `idempotency_key` (a key reused with another
 * request: draft-ietf-httpapi-idempotency-key-header) → 422;
 * FAILED_PRECONDITION → 409 or 422 as the route says (409 "the resource is in
 * the wrong state", e.g. cancelling a PENDING order; 422 "the request cannot be
 * processed as asked", e.g. an order mixing currencies); RESOURCE_EXHAUSTED → 429;
 * UNAVAILABLE → 503; DEADLINE_EXCEEDED → 504; anything else → 500.
 * For 5xx answers the detail is a fixed sentence (nothing of the internal
 * message reaches the client); the real message is logged with the request id.
 * Only an error written for the client (err.h: for_client, which rpc_channel_call
 * sets for statuses a service's handler sent) keeps its code and message; any other
 * is answered as err_redact's code says, i.e. always a 5xx, so a library's or a
 * database's text never reaches a client and never becomes a 4xx.
 */
#ifndef GATEWAY_PROBLEM_H
#define GATEWAY_PROBLEM_H

#include <jansson.h>

#include "common/err.h"

#include <stdbool.h>

#define PROBLEM_CONTENT_TYPE "application/problem+json"

/* The problem types' common prefix, and the one type that is not a status's. */
#define PROBLEM_TYPE_BASE        "https://shop-fleet.example/problems/"
#define PROBLEM_TYPE_KEY_REUSED  PROBLEM_TYPE_BASE "idempotency-key-reused"
#define PROBLEM_TITLE_KEY_REUSED "Idempotency-Key Reused"

/* problem_key_reused: err is ALREADY_EXISTS with a field violation on
 * "idempotency_key" (the services' answer to a key reused with another request). */
bool problem_key_reused(const err_t *err);

/* problem_http_status: the HTTP status for an ERR_* code; precondition_status
 * (409 or 422) is used for ERR_PRECONDITION. */
int problem_http_status(int code, int precondition_status);

/* problem_title: the reason phrase of an HTTP status ("Not Found"); "Error" for
 * one not in the table. Static string. */
const char *problem_title(int status);

/* problem_type: the problem type URI of an HTTP status (the list above); "about:blank"
 * for one not in it. Static string. */
const char *problem_type(int status);

/* problem_new: a problem object (new reference) with the given status and detail
 * (NULL: the title), typed by the status (idempotency-key-reused for a 422 whose err
 * is problem_key_reused). err may be NULL; its field violations become errors[], with
 * each field renamed through `renames` (NULL, or pairs {from, to, ..., NULL}: a
 * violation on "idempotency_key" becomes one on "Idempotency-Key"). request_id
 * may be NULL. Thread-safe. */
json_t *problem_new(int status, const char *detail, const err_t *err, const char *const *renames,
                    const char *request_id);

/* problem_from_err: the problem for a failed upstream call or local step: the
 * status from err->code (from err_redact's code when err is not for_client;
 * precondition_status as above; stored in *status), the detail from err->msg for
 * 4xx, a fixed sentence for 5xx (and then err->msg is logged with the request id).
 * New reference. Thread-safe. */
json_t *problem_from_err(const err_t *err, int precondition_status, const char *const *renames,
                         const char *request_id, int *status);

#endif
