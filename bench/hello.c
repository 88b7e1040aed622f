/*
 * hello: the HTTP floor of `make bench` (bench/README.md, docs/architecture.md §8).
 *
 * A bare libmicrohttpd server that answers every request with a fixed 200 "hello",
 * started with the gateway's threading settings (gateway/src/http.c:
 * http_server_start): internal polling thread, epoll, suspend/resume allowed, a pool
 * of HTTP_THREADS threads, the same connection limit and timeout. Whatever the
 * gateway does above this floor is the cost of its own work.
 *
 *   HELLO_ADDR=127.0.0.1:21090 HTTP_THREADS=4 bench_hello
 *
 * Prints "serving <port>" once listening; SIGTERM or SIGINT stops it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HELLO_BODY               "hello\n"
#define HELLO_MAX_CONNECTIONS    1024
#define HELLO_CONNECTION_TIMEOUT 30

static volatile sig_atomic_t hello_stop;

static void hello_on_signal(int sig)
{
    hello_stop = 1;
}

static enum MHD_Result hello_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
    struct MHD_Response *resp = cls;
    /* A body (there is none on GET) is read and dropped before answering. */
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, resp);
}

/* "host:port" (IPv4) into *sin; -1 on a malformed address. */
static int hello_parse_addr(const char *addr, struct sockaddr_in *sin)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL)
        return -1;
    char host[64];
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof(host))
        return -1;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return -1;
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, hlen ? host : "0.0.0.0", &sin->sin_addr) == 1 ? 0 : -1;
}

int main(void)
{
    const char *addr = getenv("HELLO_ADDR") ? getenv("HELLO_ADDR") : "127.0.0.1:8090";
    const char *threads_s = getenv("HTTP_THREADS") ? getenv("HTTP_THREADS") : "4";
    int threads = atoi(threads_s);
    struct sockaddr_in sin;
    if (hello_parse_addr(addr, &sin) != 0 || threads < 1 || threads > 64) {
        fprintf(stderr, "hello: bad HELLO_ADDR (%s) or HTTP_THREADS (%s)\n", addr, threads_s);
        return 2;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(HELLO_BODY), (void *)HELLO_BODY, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    /* The gateway's flags and options, minus its logger and completion callback. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, hello_handle, resp, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HELLO_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)HELLO_CONNECTION_TIMEOUT, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1U, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "hello: cannot listen on %s: %s\n", addr, strerror(errno));
        MHD_destroy_response(resp);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("serving %u\n", info != NULL ? (unsigned)info->port : 0U);
    fflush(stdout);
    struct sigaction sa = {.sa_handler = hello_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!hello_stop)
        pause();
    MHD_stop_daemon(d);
    MHD_destroy_response(resp);
    return 0;
}
