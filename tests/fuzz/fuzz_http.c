/*
 * fuzz_http: raw bytes into the gateway's HTTP server — the real http.c (framing,
 * body limits, request id and trace headers, routing, authentication, problem
 * answers) on libmicrohttpd, started in-process once with http_server_start on
 * 127.0.0.1:0. Only the route table is the target's own: handlers that use the
 * real request helpers (http_body_message with json_pb, routes_list_params,
 * routes_path_id, routes_idempotency_key, routes_update_mask, http_query_only) and
 * reply without any upstream call, so no service, Redis or network is needed.
 *
 * Each input is one client connection: connect, write the bytes, half-close,
 * read until the server closes. The half-close waits until the server has read
 * what was written (see fuzz_wait_consumed): libmicrohttpd on edge-triggered epoll
 * misses a FIN that arrives together with the last data, and then holds the
 * connection until its idle timeout. Invariants, beyond "no sanitizer report in
 * the server's threads":
 *   - whatever comes back starts with "HTTP/1.1 " and a status 100..599 (nothing,
 *     when the server closes without answering an incomplete request, is fine);
 *   - the server never answers 500: these handlers always reply, so a 500 means
 *     the HTTP layer lost track of a request;
 *   - a JSON body is JSON (UTF-8 included), and a problem that says "invalid
 *     request" has at least one entry in errors[];
 *   - the server closes within FUZZ_HTTP_WAIT_MS of the half-close (its idle
 *     timeout is far longer), so a request it forgets to finish is a finding.
 *
 * Authentication: the routes that need a token get a JWT checked by the real
 * jwt_token_verify with an HS256 key only this process knows; fuzzed tokens never
 * verify. A token that did would reach the session store and Redis, which this
 * auth_t does not have (NULL): the crash would be the report of a forged token
 * accepted.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "gateway.h"
#include "http.h"
#include "routes.h"
#include "shop/gateway/v1/gateway.pb-c.h"
#include "shop/order/v1/order_service.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"

#define FUZZ_HTTP_BODY_LIMIT 1024 /* small, so the limits are within the fuzzer's reach */
#define FUZZ_HTTP_WAIT_MS    5000
#define FUZZ_HTTP_IDLE_S     60

static const char *const deny_order[] = {"user_id", "idempotency_key", NULL};
static const char *const deny_patch[] = {"product_id", "update_mask", NULL};
static const char *const deny_stock[] = {"product_id", NULL};
static const char *const list_query[] = {"limit", "page_token", "q", "include_inactive", NULL};

/* ---- handlers: the real helpers, no upstream ---- */

static void h_text(http_req_t *r)
{
    http_reply_raw(r, 200, "text/plain", "ok\n", 3);
}

static void h_list(http_req_t *r)
{
    int32_t limit;
    const char *token;
    if (!http_query_only(r, list_query) || !routes_list_params(r, &limit, &token))
        return;
    json_t *j = json_pack("{s:i, s:s}", "limit", (int)limit, "page_token", token);
    if (j == NULL) /* a token that is not UTF-8 */
        j = json_pack("{s:i}", "limit", (int)limit);
    http_reply_json(r, 200, j);
}

static void h_get(http_req_t *r)
{
    const char *id = routes_path_id(r, "thing not found");
    if (id != NULL)
        http_reply_json(r, 200, json_pack("{s:s}", "id", id));
}

static void h_patch(http_req_t *r)
{
    const char *id = routes_path_id(r, "thing not found");
    if (id == NULL)
        return;
    Shop__Product__V1__UpdateProductRequest *req = (void *)http_body_message(
        r, &shop__product__v1__update_product_request__descriptor, deny_patch, true);
    if (req == NULL || !routes_update_mask(r, &req->update_mask, &req->n_update_mask))
        return;
    req->product_id = (char *)id;
    routes_reply_message(r, 200, &req->base);
}

static void h_stock(http_req_t *r)
{
    const char *id = routes_path_id(r, "thing not found");
    if (id == NULL)
        return;
    Shop__Product__V1__SetStockRequest *req = (void *)http_body_message(
        r, &shop__product__v1__set_stock_request__descriptor, deny_stock, true);
    if (req == NULL)
        return;
    req->product_id = (char *)id;
    routes_reply_message(r, 200, &req->base);
}

static void h_delete(http_req_t *r)
{
    if (routes_path_id(r, "thing not found") != NULL)
        http_reply_empty(r, 204);
}

static void h_order(http_req_t *r)
{
    const char *key = routes_idempotency_key(r);
    if (key == NULL)
        return;
    Shop__Order__V1__CreateOrderRequest *req = (void *)http_body_message(
        r, &shop__order__v1__create_order_request__descriptor, deny_order, true);
    if (req == NULL)
        return;
    req->idempotency_key = (char *)key;
    http_header_add(r, "Location", "/api/v1/orders/0");
    routes_reply_message(r, 202, &req->base);
}

static void h_empty_body(http_req_t *r)
{
    if (http_body_message(r, &shop__gateway__v1__empty__descriptor, NULL, false) != NULL)
        http_reply_empty(r, 204);
}

static void h_authenticated(http_req_t *r)
{
    fprintf(stderr, "fuzz_http: a request passed authentication (user \"%s\")\n", http_user_id(r));
    abort();
}

#define ROUTE(m, p, a, h)                                                                          \
    {                                                                                              \
        m, p, &(const http_route_t)                                                                \
        {                                                                                          \
            a, h                                                                                   \
        }                                                                                          \
    }

static const router_route_t routes[] = {
    ROUTE("GET", "/healthz", AUTH_NONE, h_text),
    ROUTE("GET", "/api/v1/products", AUTH_OPTIONAL, h_list),
    ROUTE("GET", "/api/v1/products/{id}", AUTH_NONE, h_get),
    ROUTE("PATCH", "/api/v1/products/{id}", AUTH_NONE, h_patch),
    ROUTE("DELETE", "/api/v1/products/{id}", AUTH_NONE, h_delete),
    ROUTE("PUT", "/api/v1/products/{id}/stock", AUTH_NONE, h_stock),
    ROUTE("POST", "/api/v1/orders", AUTH_NONE, h_order),
    ROUTE("POST", "/api/v1/orders/{id}/cancel", AUTH_NONE, h_empty_body),
    ROUTE("GET", "/api/v1/users/me", AUTH_USER, h_authenticated),
    ROUTE("POST", "/api/v1/products", AUTH_ADMIN, h_authenticated),
};

/* ---- the server, once per process ---- */

static gateway_config_t cfg = {
    .jwt_alg = JWT_ALG_NAME_HS256,
    .jwt_issuer = "shop-fuzz",
    .jwt_audience = "shop-fuzz",
    .upstream_timeout_ms = 1000,
    .body_limit = FUZZ_HTTP_BODY_LIMIT,
};
static gateway_t app = {.cfg = &cfg};
static int port;

static void fail(const char *what, const char *resp, size_t len)
{
    fprintf(stderr, "fuzz_http: %s; answer (%zu bytes): %.*s\n", what, len,
            (int)(len < 200 ? len : 200), resp);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    signal(SIGPIPE, SIG_IGN);
    log_init("fuzz-http", LOG_LEVEL_ERROR);
    log_set_fd(STDERR_FILENO);
    err_t err = ERR_INIT;
    app.keys = jwt_keys_new(&(jwt_keys_opts_t){.alg = cfg.jwt_alg,
                                               .secret = "fuzz-only secret, 32 bytes or more",
                                               .issuer = cfg.jwt_issuer,
                                               .audience = cfg.jwt_audience,
                                               .ttl_s = 60},
                            &err);
    /* No Redis and no session store: a forged token that verified would crash there. */
    app.auth = auth_new(&(auth_opts_t){.keys = app.keys, .redis_prefix = ""});
    http_server_t *s = app.keys == NULL ? NULL
                                        : http_server_start(
                                              &(http_server_opts_t){
                                                  .addr = "127.0.0.1:0",
                                                  .threads = 1,
                                                  .max_connections = 16,
                                                  .connection_timeout_s = FUZZ_HTTP_IDLE_S,
                                                  .body_limit = FUZZ_HTTP_BODY_LIMIT,
                                                  .routes = routes,
                                                  .n_routes = sizeof(routes) / sizeof(routes[0]),
                                                  .upstream_timeout_ms = cfg.upstream_timeout_ms,
                                                  .auth = app.auth,
                                                  .app = &app,
                                              },
                                              &err);
    if (s == NULL) {
        fprintf(stderr, "fuzz_http: cannot start the server: %s\n", err.msg);
        exit(1);
    }
    port = http_server_port(s);
    const char *serve = getenv("FUZZ_HTTP_SERVE");
    if (serve != NULL) { /* by hand: the same server for curl or nc, for that many seconds */
        fprintf(stderr, "fuzz_http: serving on 127.0.0.1:%d\n", port);
        sleep((unsigned)atoi(serve));
        exit(0);
    }
    return 0;
}

/* ---- one connection per input ---- */

/* connect(), finished when a signal (libFuzzer's timers) interrupted it: the
 * connection goes on in the kernel, and its outcome is read once it is writable. */
static int fuzz_connect_once(int fd, const struct sockaddr_in *sa)
{
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return 0;
    if (errno != EINTR && errno != EINPROGRESS)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    while ((n = poll(&p, 1, FUZZ_HTTP_WAIT_MS)) < 0 && errno == EINTR)
        ;
    int so = 0;
    socklen_t len = sizeof(so);
    if (n <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len) != 0 || so != 0) {
        errno = n == 0 ? ETIMEDOUT : so ? so : errno;
        return -1;
    }
    return 0;
}

static int fuzz_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = FUZZ_HTTP_WAIT_MS / 1000};
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        fuzz_connect_once(fd, &sa) != 0) {
        fprintf(stderr, "fuzz_http: cannot connect: %s\n", strerror(errno));
        exit(1); /* the harness, not the server: no input to save */
    }
    return fd;
}

/* The server's end of the connection whose client end has local port cport (this
 * process holds both ends), or -1 when it is not accepted yet or closed already. */
static int fuzz_server_fd(int cport)
{
    DIR *d = opendir("/proc/self/fd");
    int found = -1;
    for (struct dirent *e; d != NULL && found < 0 && (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name);
        struct sockaddr_in self, peer;
        socklen_t ls = sizeof(self), lp = sizeof(peer);
        if (e->d_name[0] != '.' && fd != dirfd(d) &&
            getsockname(fd, (struct sockaddr *)&self, &ls) == 0 && self.sin_family == AF_INET &&
            ntohs(self.sin_port) == port && getpeername(fd, (struct sockaddr *)&peer, &lp) == 0 &&
            ntohs(peer.sin_port) == cport)
            found = fd;
    }
    if (d != NULL)
        closedir(d);
    return found;
}

/* Waits (up to a second) until the server has read every byte written to fd, or
 * has closed its end. The FIN that follows then comes as an event of its own,
 * which libmicrohttpd sees; sent together with data it is missed (the read that
 * gets the data returns less than asked, and libmicrohttpd takes that as drained). */
static void fuzz_wait_consumed(int fd)
{
    struct sockaddr_in self;
    socklen_t len = sizeof(self);
    getsockname(fd, (struct sockaddr *)&self, &len);
    int64_t until = clock_mono_us() + 1000000;
    while (clock_mono_us() < until) {
        int sfd = fuzz_server_fd(ntohs(self.sin_port)), unread = -1;
        if (sfd >= 0 && ioctl(sfd, FIONREAD, &unread) == 0 && unread == 0)
            return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (sfd < 0 && poll(&p, 1, 0) != 0)
            return; /* not there and something came back: it closed */
        usleep(20);
    }
}

/* The first answer's body, when it came whole: a JSON body is JSON (jansson checks
 * UTF-8 too), and a problem that says "invalid request" names at least one field.
 * Not called for an answer to HEAD, which has no body. */
static void check_body(const char *resp, size_t len)
{
    const char *end = memmem(resp, len, "\r\n\r\n", 4);
    if (end == NULL)
        return;
    size_t head = (size_t)(end + 4 - resp), clen = 0;
    bool json = false, have_len = false;
    for (const char *l = memchr(resp, '\n', head); l != NULL && l + 1 < end;
         l = memchr(l + 1, '\n', (size_t)(end - l - 1))) {
        if (strncasecmp(l + 1, "Content-Length:", 15) == 0) {
            clen = strtoul(l + 16, NULL, 10);
            have_len = true;
        } else if (strncasecmp(l + 1, "Content-Type:", 13) == 0) {
            const char *eol = memchr(l + 1, '\r', (size_t)(end - l));
            json = eol != NULL && memmem(l + 1, (size_t)(eol - l - 1), "json", 4) != NULL;
        }
    }
    if (!json || !have_len || clen == 0 || head + clen > len)
        return;
    json_error_t je;
    json_t *body = json_loadb(resp + head, clen, 0, &je);
    if (body == NULL)
        fail("a JSON answer that is not JSON", resp, len);
    const char *detail = json_string_value(json_object_get(body, "detail"));
    if (detail != NULL && strcmp(detail, "invalid request") == 0 &&
        json_array_size(json_object_get(body, "errors")) == 0)
        fail("an invalid request answered without the field at fault", resp, len);
    json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = fuzz_connect();
    /* The server may answer and close before reading everything (a Content-Length
     * over the limit): a failed write just ends the writing. */
    for (size_t off = 0; off < size;) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    fuzz_wait_consumed(fd);
    shutdown(fd, SHUT_WR);

    static char resp[16384];
    size_t len = 0;
    int64_t deadline = clock_mono_us() + FUZZ_HTTP_WAIT_MS * 1000;
    for (;;) {
        int left = (int)((deadline - clock_mono_us()) / 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) == 0)
            fail("the server neither answered nor closed in time", resp, len);
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            break; /* closed (or reset after its answer) */
        if (n > 0 && len < sizeof(resp)) {
            size_t k = (size_t)n < sizeof(resp) - len ? (size_t)n : sizeof(resp) - len;
            memcpy(resp + len, buf, k);
            len += k;
        }
    }
    /* No TIME_WAIT left behind: thousands of connections a second would fill the
     * port range. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);

    static const char prefix[] = "HTTP/1.1 ";
    size_t plen = sizeof(prefix) - 1;
    if (memcmp(resp, prefix, len < plen ? len : plen) != 0)
        fail("the answer does not start with HTTP/1.1", resp, len);
    if (len >= plen + 4) {
        const char *st = resp + plen;
        if (st[0] < '1' || st[0] > '5' || st[1] < '0' || st[1] > '9' || st[2] < '0' ||
            st[2] > '9' || st[3] != ' ')
            fail("the status line has no 3-digit status", resp, len);
        if (memcmp(st, "500", 3) == 0)
            fail("the server answered 500", resp, len);
    }
    /* The answer to HEAD has GET's Content-Length but no body: what follows it is the
     * next pipelined request's answer, not a body to check. */
    if (!(size >= 5 && memcmp(data, "HEAD ", 5) == 0))
        check_body(resp, len);
    return 0;
}
