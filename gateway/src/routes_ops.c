/*
 * routes_ops: liveness, readiness, metrics and the API document.
 *
 * /readyz probes Redis (PING) and each service's grpc.health.v1.Health/Check
 * with a short deadline, one after the other, and answers 503 naming what is
 * not ready (Redis refusing the gateway's credentials: "UNAUTHENTICATED"). The probes block the MHD thread for at most READY_TIMEOUT_MS each:
 * an orchestrator polls it a few times a minute, not per request.
 */
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"
#include "grpc/health/v1/health.pb-c.h"
#include "routes.h"

#define READY_TIMEOUT_MS 500

extern const char gateway_openapi_json[];
extern const size_t gateway_openapi_json_len;

static const char *const ops_no_query[] = {NULL};

void routes_ops_healthz(http_req_t *r)
{
    if (http_query_only(r, ops_no_query))
        http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* "ok", or why a service is not ready. */
static const char *ops_probe_service(http_req_t *r, rpc_channel_t *ch)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    err_t err = ERR_INIT;
    if (rpc_channel_call(ch, &grpc__health__v1__health__descriptor, "Check", &req.base,
                         http_arena(r), &resp, NULL, 0, READY_TIMEOUT_MS, &err) != 0)
        return err_code_name(err.code);
    const Grpc__Health__V1__HealthCheckResponse *h = (const void *)resp;
    return h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               ? "ok"
               : "NOT_SERVING";
}

static const char *ops_probe_redis(http_req_t *r)
{
    err_t err = ERR_INIT;
    const char *argv[] = {"PING"};
    redisReply *rep = redis_pool_command(routes_app(r)->redis, 1, argv, NULL, &err);
    /* Refused credentials are a deployment's error, not an outage: said as such (the
     * log has Redis's answer). */
    if (rep == NULL && redis_pool_auth_refused(routes_app(r)->redis))
        return err_code_name(ERR_UNAUTHENTICATED);
    if (rep == NULL)
        return err_code_name(err.code);
    freeReplyObject(rep);
    return "ok";
}

void routes_ops_readyz(http_req_t *r)
{
    if (!http_query_only(r, ops_no_query))
        return;
    const char *redis = ops_probe_redis(r);
    bool ready = strcmp(redis, "ok") == 0;
    json_t *checks = json_pack("{s:s}", "redis", redis);
    for (size_t i = 0; i < UPSTREAM_N; i++) {
        const char *c = ops_probe_service(r, routes_app(r)->upstream[i]);
        ready = ready && strcmp(c, "ok") == 0;
        json_object_set_new(checks, upstream_defs[i].name, json_string(c));
    }
    http_reply_json(
        r, ready ? 200 : 503,
        json_pack("{s:s, s:o}", "status", ready ? "ready" : "not ready", "checks", checks));
}

void routes_ops_metrics(http_req_t *r)
{
    if (!http_query_only(r, ops_no_query))
        return;
    size_t len;
    char *text = metrics_render(&len);
    http_reply_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

void routes_ops_openapi(http_req_t *r)
{
    if (http_query_only(r, ops_no_query))
        http_reply_raw(r, 200, "application/json", gateway_openapi_json, gateway_openapi_json_len);
}
