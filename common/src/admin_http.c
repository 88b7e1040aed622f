/*
 * admin_http: admin.h on libmicrohttpd, the only file that includes it.
 *
 * Two threads share the listening socket (MHD's thread pool over epoll), enough for
 * probes and scrapes; a connection limit and an idle timeout keep a stuck client
 * from holding them. Bodies are small and built per request; MHD copies or frees
 * them once sent (0.9.75 has no static-buffer variant, docs/libraries.md).
 */
#include "common/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc_internal.h"
#include "common/log.h"
#include "common/metrics.h"

#define ADMIN_THREADS        2
#define ADMIN_CONN_LIMIT     64
#define ADMIN_CONN_TIMEOUT_S 10
#define ADMIN_BODY_MAX       (ERR_MSG_MAX * 6 + 64)
#define ADMIN_METRICS_CTYPE  "text/plain; version=0.0.4; charset=utf-8"
#define ADMIN_JSON_CTYPE     "application/json"

struct admin_server {
    struct MHD_Daemon *daemon;
    admin_ready_fn ready;
    void *ud;
    int port;
};

typedef struct admin_sockaddr {
    struct sockaddr_storage ss;
    bool v6;
} admin_sockaddr_t;

/* "[v6]:port", "v4:port" or ":port" into a socket address. */
static int admin_parse_addr(const char *addr, admin_sockaddr_t *out, err_t *err)
{
    memset(out, 0, sizeof(*out));
    const char *colon = addr != NULL ? strrchr(addr, ':') : NULL;
    char *end;
    errno = 0;
    long port = colon != NULL ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
        port > 65535)
        return err_set(err, ERR_INVALID, "admin address \"%s\": expected host:port", addr);

    char host[64];
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof(host))
        return err_set(err, ERR_INVALID, "admin address \"%s\": host too long", addr);
    memcpy(host, addr, hlen);
    host[hlen] = '\0';

    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        host[hlen - 1] = '\0';
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->v6 = true;
        if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
            return err_set(err, ERR_INVALID, "admin address \"%s\": bad IPv6 host", addr);
        return 0;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (hlen == 0)
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return err_set(err, ERR_INVALID, "admin address \"%s\": bad IPv4 host", addr);
    return 0;
}

/* Appends s to out as JSON string content. Bytes from 0x80 up pass through: the
 * reason comes from err_t, whose text is UTF-8 cut on a character boundary. */
static void admin_json_escape(char *out, size_t size, const char *s)
{
    size_t o = strlen(out);
    for (; *s != '\0' && o + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, size - o, "\\%c", c);
        else if (c < 0x20)
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

static void admin_count(const char *path, unsigned code)
{
    char code_s[8];
    snprintf(code_s, sizeof(code_s), "%u", code);
    metrics_counter_t *c =
        metrics_counter("admin_http_requests_total", "Requests served by the admin HTTP server",
                        (const char *[]){"path", path, "code", code_s, NULL});
    metrics_counter_add(c, 1);
}

static enum MHD_Result admin_reply(struct MHD_Connection *conn, const char *path, unsigned code,
                                   struct MHD_Response *resp, const char *ctype)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    admin_count(path, code);
    return rc;
}

static enum MHD_Result admin_reply_text(struct MHD_Connection *conn, const char *path,
                                        unsigned code, const char *body, const char *ctype)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    return admin_reply(conn, path, code, resp, ctype);
}

static enum MHD_Result admin_readyz(admin_server_t *s, struct MHD_Connection *conn)
{
    err_t err = ERR_INIT;
    if (s->ready == NULL || s->ready(s->ud, &err) == 0)
        return admin_reply_text(conn, "/readyz", MHD_HTTP_OK, "{\"status\":\"ready\"}",
                                ADMIN_JSON_CTYPE);
    /* The escaper stops 3 bytes short of the end, which the closing "} fills. */
    char body[ADMIN_BODY_MAX] = "{\"status\":\"not ready\",\"reason\":\"";
    admin_json_escape(body, sizeof(body) - 3,
                      err.msg[0] != '\0' ? err.msg : "readiness check failed");
    strcat(body, "\"}");
    return admin_reply_text(conn, "/readyz", MHD_HTTP_SERVICE_UNAVAILABLE, body, ADMIN_JSON_CTYPE);
}

static enum MHD_Result admin_metrics(struct MHD_Connection *conn)
{
    size_t len;
    char *text = metrics_render(&len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    return admin_reply(conn, "/metrics", MHD_HTTP_OK, resp, ADMIN_METRICS_CTYPE);
}

/* MHD's access handler. Answers on the first call: no route takes a body, and MHD
 * closes a connection whose request body was left unread. */
static enum MHD_Result admin_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
    admin_server_t *s = cls;
    const char *path = strcmp(url, "/healthz") == 0   ? "/healthz"
                       : strcmp(url, "/readyz") == 0  ? "/readyz"
                       : strcmp(url, "/metrics") == 0 ? "/metrics"
                                                      : NULL;
    if (path == NULL)
        return admin_reply_text(conn, "other", MHD_HTTP_NOT_FOUND, "{\"status\":\"not found\"}",
                                ADMIN_JSON_CTYPE);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return admin_reply_text(conn, path, MHD_HTTP_METHOD_NOT_ALLOWED,
                                "{\"status\":\"method not allowed\"}", ADMIN_JSON_CTYPE);
    if (path[1] == 'h')
        return admin_reply_text(conn, path, MHD_HTTP_OK, "{\"status\":\"ok\"}", ADMIN_JSON_CTYPE);
    if (path[1] == 'r')
        return admin_readyz(s, conn);
    return admin_metrics(conn);
}

/* MHD's own diagnostics, as our log lines. */
__attribute__((format(printf, 2, 0))) static void admin_mhd_log(void *cls, const char *fmt,
                                                                va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    LOG_WARN("admin http", LOG_STR("detail", msg));
}

admin_server_t *admin_server_start(const char *addr, admin_ready_fn ready, void *ud, err_t *err)
{
    admin_sockaddr_t sa;
    if (admin_parse_addr(addr, &sa, err) != 0)
        return NULL;
    admin_server_t *s = common__xcalloc(1, sizeof(*s));
    s->ready = ready;
    s->ud = ud;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (sa.v6)
        flags |= MHD_USE_IPv6;
    errno = 0;
    /* The logger goes first: MHD reports options before it through its own. */
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, admin_handle, s, MHD_OPTION_EXTERNAL_LOGGER, admin_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa.ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)ADMIN_THREADS, MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_CONN_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_CONN_TIMEOUT_S, MHD_OPTION_END);
    if (s->daemon == NULL) {
        int e = errno;
        free(s);
        err_set(err, ERR_UNAVAILABLE, "admin server cannot listen on %s: %s", addr,
                e != 0 ? strerror(e) : "unknown error");
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? info->port : 0;
    return s;
}

int admin_server_port(const admin_server_t *s)
{
    return s->port;
}

void admin_server_stop(admin_server_t *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->daemon);
    free(s);
}
