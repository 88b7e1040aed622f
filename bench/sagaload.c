/*
 * sagaload: the open-loop load generator of `make bench` (bench/README.md).
 *
 *   bench_sagaload get URL RATE SECONDS [-c CONNS] [-H 'Name: value']...
 *   bench_sagaload orders GATEWAY_URL RATE SECONDS -t TOKENS -p PRODUCTS -b BROKERS
 *                  [-F KAFKA_CONFIG] [-c CONNS] [-d DRAIN_SECONDS]
 *   bench_sagaload startup URL ENV_FILE LOG_FILE PROGRAM
 *
 * get, orders: request i is due at t0 + i / RATE, whatever happened to the requests
 * before it (open loop). CONNS threads each own one keep-alive HTTP/1.1 connection and
 * take the next due request; when every connection is busy a request starts late, and
 * its latency still counts from its due time, so a stall shows up in the percentiles
 * instead of silently lowering the rate (coordinated omission corrected).
 *
 * orders: POST /api/v1/orders (one line, quantity 1; users and products taken in turn
 * from the TOKENS and PRODUCTS files, one per line) and, on a Kafka consumer of
 * order.events assigned at the partitions' ends before the first request, wait for
 * each accepted order's OrderConfirmed (or OrderCancelled), key = order id. The
 * end-to-end latency is consumption time minus due time; confirmed_rps counts the
 * confirmations of this run that land in the second half of the sending window.
 *
 * startup: runs PROGRAM with the NUL-separated environment of ENV_FILE (a copy of
 * /proc/<pid>/environ), output appended to LOG_FILE, polls URL every 2 ms and reports
 * the time from fork to the first 200; then stops the program (SIGTERM, waited for).
 *
 * Every mode prints one JSON object on stdout. Exit 0 if it measured (even when every
 * request failed: that is a result), 2 on bad usage, 1 if it could not run.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shop/events/v1/events.pb-c.h"

#define NS_PER_S         INT64_C(1000000000)
#define LOAD_BUF         65536
#define LOAD_REQ_MAX     4096
#define LOAD_MAX_HEADERS 8
#define LOAD_MAX_CONNS   512
#define LOAD_ID_LEN      36
#define LOAD_TOPIC       "order.events"
#define LOAD_POLL_MS     50
#define STARTUP_POLL_NS  (2 * 1000 * 1000)
#define STARTUP_LIMIT_S  30
#define STOP_WAIT_S      20

/* ---------------------------------------------------------------- helpers ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
    struct timespec ts = {.tv_sec = t / NS_PER_S, .tv_nsec = t % NS_PER_S};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) {
        fprintf(stderr, "sagaload: out of memory\n");
        abort();
    }
    return p;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of sorted v[0..n) by the nearest-rank method, -1 if empty or if
 * it falls on an unfinished sample (INT64_MAX): then it is unknown, not small. */
static int64_t quantile(const int64_t *v, size_t n, double q)
{
    if (n == 0)
        return -1;
    size_t k = (size_t)(q * (double)n + 0.999999);
    k = k < 1 ? 1 : k > n ? n : k;
    return v[k - 1] == INT64_MAX ? -1 : v[k - 1];
}

/* Prints `"name": {"p50": .., "p90": .., "p99": .., "max": ..}` in `unit` (ns divisor);
 * unknown quantiles are null. Sorts v. */
static void print_quantiles(const char *name, int64_t *v, size_t n, double unit)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    static const double qs[] = {0.5, 0.9, 0.99, 1.0};
    static const char *const names[] = {"p50", "p90", "p99", "max"};
    printf("\"%s\": {", name);
    for (size_t i = 0; i < 4; i++) {
        int64_t x = quantile(v, n, qs[i]);
        if (x < 0)
            printf("%s\"%s\": null", i ? ", " : "", names[i]);
        else
            printf("%s\"%s\": %.3f", i ? ", " : "", names[i], (double)x / unit);
    }
    printf("}");
}

/* Lines of a file (blank lines skipped) into a NULL-terminated array; NULL on error. */
static char **read_lines(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 16;
    char **v = xcalloc(cap + 1, sizeof(*v));
    char *line = NULL;
    size_t len = 0;
    *n = 0;
    while (getline(&line, &len, f) > 0) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (*n == cap) {
            cap *= 2;
            char **nv = realloc(v, (cap + 1) * sizeof(*v));
            if (nv == NULL)
                abort();
            v = nv;
        }
        v[(*n)++] = strdup(line);
        v[*n] = NULL;
    }
    free(line);
    fclose(f);
    return v;
}

/* ------------------------------------------------------------ HTTP client ---- */

typedef struct url {
    struct sockaddr_in sin;
    char hostport[64];
    char path[1024];
} url_t;

/* "http://a.b.c.d:port/path" (IPv4 literal: the bench runs on 127.0.0.1 only). */
static int url_parse(const char *s, url_t *u)
{
    memset(u, 0, sizeof(*u));
    if (strncmp(s, "http://", 7) != 0)
        return -1;
    s += 7;
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof(u->hostport))
        return -1;
    memcpy(u->hostport, s, hlen);
    snprintf(u->path, sizeof(u->path), "%s", slash ? slash : "/");
    char host[64];
    snprintf(host, sizeof(host), "%s", u->hostport);
    char *colon = strrchr(host, ':');
    long port = 80;
    if (colon != NULL) {
        *colon = '\0';
        port = strtol(colon + 1, NULL, 10);
    }
    u->sin.sin_family = AF_INET;
    u->sin.sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &u->sin.sin_addr) == 1 && port > 0 && port < 65536 ? 0 : -1;
}

typedef struct conn {
    const url_t *url;
    int fd;
    char buf[LOAD_BUF];
} conn_t;

static void conn_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int conn_open(conn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, (const struct sockaddr *)&c->url->sin, sizeof(c->url->sin)) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static const char *find_header(const char *head, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
            return p + 3 + n;
    return NULL;
}

/* Reads one response into c->buf; returns its status (>0), or -1 if the connection
 * failed (with *got false if nothing had arrived: the request may be sent again; an
 * order is safe to resend, its Idempotency-Key replays it). The body is NUL-terminated
 * at *body. */
static int conn_read_response(conn_t *c, const char **body, bool *got)
{
    size_t len = 0, head_len = 0, want = 0;
    *got = false;
    for (;;) {
        if (len + 1 >= sizeof(c->buf))
            return -1;
        ssize_t r = recv(c->fd, c->buf + len, sizeof(c->buf) - 1 - len, 0);
        if (r <= 0)
            return -1;
        *got = true;
        len += (size_t)r;
        c->buf[len] = '\0';
        if (head_len == 0) {
            char *end = strstr(c->buf, "\r\n\r\n");
            if (end == NULL)
                continue;
            *end = '\0'; /* headers searched as one string, body follows */
            head_len = (size_t)(end - c->buf) + 4;
            const char *cl = find_header(c->buf, "content-length");
            want = head_len + (cl ? strtoul(cl, NULL, 10) : 0);
        }
        if (len >= want)
            break;
    }
    int status = 0;
    if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *conn_h = find_header(c->buf, "connection");
    *body = c->buf + head_len;
    if (conn_h != NULL && strncasecmp(conn_h + strspn(conn_h, " "), "close", 5) == 0)
        conn_close(c);
    return status;
}

/* Sends req and reads the response, on a fresh connection if needed; retried once if
 * the connection died before answering (a keep-alive connection the server closed). */
static int conn_roundtrip(conn_t *c, const char *req, size_t req_len, const char **body)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->fd < 0 && conn_open(c) != 0)
            return -1;
        size_t off = 0;
        while (off < req_len) {
            ssize_t w = send(c->fd, req + off, req_len - off, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        bool got = false;
        int status = off == req_len ? conn_read_response(c, body, &got) : -1;
        if (status > 0)
            return status;
        conn_close(c);
        if (got)
            return -1;
    }
    return -1;
}

/* ------------------------------------------------------ order bookkeeping ---- */

/* Order id → what we know: the request that created it (once its response came) and
 * the outcome seen on order.events (maybe first). Open addressing, one mutex: a few
 * thousand operations per second. */
typedef struct entry {
    char id[LOAD_ID_LEN + 1];
    long ticket;         /* -1 until the POST answered with this id */
    int64_t resolved_ns; /* 0 until OrderConfirmed / OrderCancelled */
    bool confirmed;
} entry_t;

typedef struct table {
    pthread_mutex_t mu;
    entry_t *e;
    size_t cap, used;
    atomic_long done; /* entries with both a ticket and an outcome */
} table_t;

static void table_init(table_t *t, size_t expected)
{
    t->cap = 1024;
    while (t->cap < expected * 4)
        t->cap *= 2;
    t->e = xcalloc(t->cap, sizeof(*t->e));
    pthread_mutex_init(&t->mu, NULL);
    atomic_init(&t->done, 0);
}

static size_t table_hash(const char *id)
{
    size_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return h;
}

/* The entry of id, created if missing (NULL when the table is too full to add). */
static entry_t *table_slot(table_t *t, const char *id)
{
    for (size_t i = table_hash(id) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        entry_t *e = &t->e[i];
        if (e->id[0] == '\0') {
            if (t->used * 4 >= t->cap * 3)
                return NULL;
            snprintf(e->id, sizeof(e->id), "%s", id);
            e->ticket = -1;
            t->used++;
            return e;
        }
        if (strcmp(e->id, id) == 0)
            return e;
    }
}

static void table_note_ticket(table_t *t, const char *id, long ticket)
{
    pthread_mutex_lock(&t->mu);
    entry_t *e = table_slot(t, id);
    if (e != NULL) {
        e->ticket = ticket;
        if (e->resolved_ns)
            atomic_fetch_add(&t->done, 1);
    }
    pthread_mutex_unlock(&t->mu);
}

static void table_note_outcome(table_t *t, const char *id, int64_t at, bool confirmed)
{
    pthread_mutex_lock(&t->mu);
    entry_t *e = table_slot(t, id);
    if (e != NULL && e->resolved_ns == 0) {
        e->resolved_ns = at;
        e->confirmed = confirmed;
        if (e->ticket >= 0)
            atomic_fetch_add(&t->done, 1);
    }
    pthread_mutex_unlock(&t->mu);
}

/* ------------------------------------------------------------- the run ---- */

typedef enum { MODE_GET, MODE_ORDERS } load_mode_t;

typedef struct run {
    load_mode_t mode;
    url_t url;
    double rate;
    long n;     /* requests in the run */
    int64_t t0; /* due time of request 0 */
    atomic_long next;
    int64_t *lat; /* response time from the due time, per request; INT64_MAX if failed */
    int *status;
    const char *headers[LOAD_MAX_HEADERS];
    size_t n_headers;
    char **tokens, **products;
    size_t n_tokens, n_products;
    char run_id[32];
    table_t orders;
    rd_kafka_t *rk;
    atomic_bool consuming;
    atomic_long mismatched;
} run_t;

static size_t build_request(const run_t *r, long i, char *out)
{
    if (r->mode == MODE_GET) {
        int n = snprintf(out, LOAD_REQ_MAX, "GET %s HTTP/1.1\r\nHost: %s\r\n", r->url.path,
                         r->url.hostport);
        for (size_t h = 0; h < r->n_headers; h++)
            n += snprintf(out + n, LOAD_REQ_MAX - (size_t)n, "%s\r\n", r->headers[h]);
        return (size_t)(n + snprintf(out + n, LOAD_REQ_MAX - (size_t)n, "\r\n"));
    }
    char body[256];
    int blen = snprintf(body, sizeof(body), "{\"lines\":[{\"product_id\":\"%s\",\"quantity\":1}]}",
                        r->products[(size_t)i % r->n_products]);
    return (size_t)snprintf(out, LOAD_REQ_MAX,
                            "POST /api/v1/orders HTTP/1.1\r\nHost: %s\r\n"
                            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                            "Idempotency-Key: %s-%ld\r\nContent-Length: %d\r\n\r\n%s",
                            r->url.hostport, r->tokens[(size_t)i % r->n_tokens], r->run_id, i, blen,
                            body);
}

/* The "id" of an order in the 202 body. */
static bool order_id_of(const char *body, char *id)
{
    const char *p = strstr(body, "\"id\":");
    if (p == NULL)
        return false;
    p += 5;
    p += strspn(p, " ");
    if (*p != '"' || strlen(p + 1) < LOAD_ID_LEN + 1 || p[1 + LOAD_ID_LEN] != '"')
        return false;
    memcpy(id, p + 1, LOAD_ID_LEN);
    id[LOAD_ID_LEN] = '\0';
    return true;
}

static void *worker_main(void *arg)
{
    run_t *r = arg;
    conn_t *c = xcalloc(1, sizeof(*c));
    c->url = &r->url;
    c->fd = -1;
    char req[LOAD_REQ_MAX];
    for (;;) {
        long i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n)
            break;
        int64_t due = r->t0 + (int64_t)((double)i * (double)NS_PER_S / r->rate);
        sleep_until_ns(due);
        size_t len = build_request(r, i, req);
        const char *body = "";
        int status = conn_roundtrip(c, req, len, &body);
        int64_t done = now_ns();
        r->status[i] = status;
        r->lat[i] = status >= 200 && status < 300 ? done - due : INT64_MAX;
        char id[LOAD_ID_LEN + 1];
        if (r->mode == MODE_ORDERS && status == 202 && order_id_of(body, id))
            table_note_ticket(&r->orders, id, i);
    }
    conn_close(c);
    free(c);
    return NULL;
}

/* --------------------------------------------------------- order.events ---- */

/* conf_file_apply: every "name=value" line of path (blank lines and '#' comments
 * skipped) set on conf; 0, or -1 with why. */
static int conf_file_apply(rd_kafka_conf_t *conf, const char *path, char *why, size_t why_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (eq == NULL) {
            snprintf(why, why_len, "%s: a line without '='", path);
            rc = -1;
            break;
        }
        *eq = '\0';
        if (rd_kafka_conf_set(conf, line, eq + 1, why, why_len) != RD_KAFKA_CONF_OK)
            rc = -1;
    }
    fclose(f);
    return rc;
}

/* A consumer without a group: assigned every partition of order.events at its high
 * watermark, so it sees exactly what is written from now on. */
static rd_kafka_t *consumer_new(const char *brokers, const char *config_file, char *why,
                                size_t why_len)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[64];
    snprintf(group, sizeof(group), "bench-sagaload-%d", (int)getpid());
    const char *kv[] = {"bootstrap.servers",    brokers, "group.id",          group,
                        "enable.auto.commit",   "false", "fetch.wait.max.ms", "5",
                        "socket.nagle.disable", "true",  "log_level",         "3"};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i += 2)
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], why, why_len) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    if (config_file && conf_file_apply(conf, config_file, why, why_len) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, why_len);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static int consumer_assign_end(rd_kafka_t *rk, char *why, size_t why_len)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, LOAD_TOPIC, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].partition_cnt == 0) {
        snprintf(why, why_len, "no metadata for %s: %s", LOAD_TOPIC, rd_kafka_err2str(e));
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(np);
    int rc = 0;
    for (int p = 0; p < np && rc == 0; p++) {
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(rk, LOAD_TOPIC, p, &lo, &hi, 10000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(why, why_len, "watermarks of %s/%d: %s", LOAD_TOPIC, p, rd_kafka_err2str(e));
            rc = -1;
        }
        rd_kafka_topic_partition_list_add(parts, LOAD_TOPIC, p)->offset = hi;
    }
    if (rc == 0 && (e = rd_kafka_assign(rk, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(why, why_len, "assign: %s", rd_kafka_err2str(e));
        rc = -1;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

/* Records one order.events message: its type from the ce_type header, the order id
 * from the key, checked against the payload's order_id. */
static void consumer_record(run_t *r, const rd_kafka_message_t *m, int64_t at)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *type = NULL;
    size_t type_len = 0;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, "ce_type", &type, &type_len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    bool confirmed = type_len == 29 && memcmp(type, "shop.events.v1.OrderConfirmed", 29) == 0;
    bool cancelled = type_len == 29 && memcmp(type, "shop.events.v1.OrderCancelled", 29) == 0;
    if ((!confirmed && !cancelled) || m->key_len != LOAD_ID_LEN)
        return;
    char id[LOAD_ID_LEN + 1];
    memcpy(id, m->key, LOAD_ID_LEN);
    id[LOAD_ID_LEN] = '\0';
    const char *payload_id = NULL;
    Shop__Events__V1__OrderConfirmed *oc = NULL;
    Shop__Events__V1__OrderCancelled *ox = NULL;
    if (confirmed && (oc = shop__events__v1__order_confirmed__unpack(NULL, m->len, m->payload)))
        payload_id = oc->order_id;
    if (cancelled && (ox = shop__events__v1__order_cancelled__unpack(NULL, m->len, m->payload)))
        payload_id = ox->order_id;
    if (payload_id == NULL || strcasecmp(payload_id, id) != 0)
        atomic_fetch_add(&r->mismatched, 1);
    else
        table_note_outcome(&r->orders, id, at, confirmed);
    if (oc != NULL)
        shop__events__v1__order_confirmed__free_unpacked(oc, NULL);
    if (ox != NULL)
        shop__events__v1__order_cancelled__free_unpacked(ox, NULL);
}

static void *consumer_main(void *arg)
{
    run_t *r = arg;
    while (atomic_load(&r->consuming)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, LOAD_POLL_MS);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            consumer_record(r, m, now_ns());
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* ------------------------------------------------------------- reports ---- */

static void report_get(run_t *r, int64_t end_ns, int conns)
{
    long ok = 0;
    for (long i = 0; i < r->n; i++)
        ok += r->lat[i] != INT64_MAX;
    double secs = (double)(end_ns - r->t0) / (double)NS_PER_S;
    printf("{\"mode\": \"get\", \"url_path\": \"%s\", \"offered_rps\": %.1f, \"connections\": %d, "
           "\"sent\": %ld, \"ok\": %ld, \"errors\": %ld, \"achieved_rps\": %.1f, ",
           r->url.path, r->rate, conns, r->n, ok, r->n - ok, secs > 0 ? (double)ok / secs : 0.0);
    print_quantiles("latency_us", r->lat, (size_t)r->n, 1e3);
    printf("}\n");
}

/* Outcome of each request from the table: resolved time and kind, by ticket. */
static void orders_outcomes(run_t *r, int64_t *resolved, bool *confirmed, long *foreign)
{
    *foreign = 0;
    for (size_t k = 0; k < r->orders.cap; k++) {
        const entry_t *e = &r->orders.e[k];
        if (e->id[0] == '\0')
            continue;
        if (e->ticket < 0) {
            *foreign += e->resolved_ns != 0;
            continue;
        }
        resolved[e->ticket] = e->resolved_ns;
        confirmed[e->ticket] = e->confirmed;
    }
}

static void report_orders(run_t *r, double seconds, int conns)
{
    int64_t *resolved = xcalloc((size_t)r->n, sizeof(*resolved));
    bool *confirmed = xcalloc((size_t)r->n, sizeof(*confirmed));
    int64_t *e2e = xcalloc((size_t)r->n, sizeof(*e2e));
    long foreign, accepted = 0, n_confirmed = 0, n_cancelled = 0, in_window = 0, n_e2e = 0;
    orders_outcomes(r, resolved, confirmed, &foreign);
    /* Steady state: confirmations of this run in the second half of the sending window. */
    int64_t win_lo = r->t0 + (int64_t)(seconds * 0.5 * (double)NS_PER_S);
    int64_t win_hi = r->t0 + (int64_t)(seconds * (double)NS_PER_S);
    for (long i = 0; i < r->n; i++) {
        if (r->status[i] != 202 && r->status[i] != 200)
            continue;
        accepted++;
        int64_t due = r->t0 + (int64_t)((double)i * (double)NS_PER_S / r->rate);
        bool ok = resolved[i] != 0 && confirmed[i];
        n_confirmed += ok;
        n_cancelled += resolved[i] != 0 && !confirmed[i];
        in_window += ok && resolved[i] >= win_lo && resolved[i] < win_hi;
        e2e[n_e2e++] = ok ? resolved[i] - due : INT64_MAX;
    }
    printf("{\"mode\": \"orders\", \"offered_rps\": %.1f, \"seconds\": %.1f, \"connections\": %d, "
           "\"sent\": %ld, \"accepted\": %ld, \"http_errors\": %ld, \"confirmed\": %ld, "
           "\"cancelled\": %ld, \"unresolved\": %ld, \"confirmed_rps\": %.1f, "
           "\"foreign_events\": %ld, \"payload_mismatches\": %ld, ",
           r->rate, seconds, conns, r->n, accepted, r->n - accepted, n_confirmed, n_cancelled,
           accepted - n_confirmed - n_cancelled, (double)in_window / (seconds * 0.5), foreign,
           atomic_load(&r->mismatched));
    print_quantiles("http_ms", r->lat, (size_t)r->n, 1e6);
    printf(", ");
    print_quantiles("e2e_ms", e2e, (size_t)n_e2e, 1e6);
    printf("}\n");
    free(resolved);
    free(confirmed);
    free(e2e);
}

/* ------------------------------------------------------------ the modes ---- */

typedef struct opts {
    int conns;
    double drain_s;
    const char *tokens, *products, *brokers, *kafka_config;
    const char *headers[LOAD_MAX_HEADERS];
    size_t n_headers;
} opts_t;

static int orders_setup(run_t *r, const opts_t *o)
{
    char why[512] = "";
    if (!(r->tokens = read_lines(o->tokens, &r->n_tokens)) || r->n_tokens == 0 ||
        !(r->products = read_lines(o->products, &r->n_products)) || r->n_products == 0) {
        fprintf(stderr, "sagaload: orders needs -t TOKENS and -p PRODUCTS files, one per line\n");
        return -1;
    }
    table_init(&r->orders, (size_t)r->n);
    if (!(r->rk = consumer_new(o->brokers, o->kafka_config, why, sizeof(why))) ||
        consumer_assign_end(r->rk, why, sizeof(why)) != 0) {
        fprintf(stderr, "sagaload: kafka consumer on %s: %s\n", o->brokers, why);
        return -1;
    }
    snprintf(r->run_id, sizeof(r->run_id), "bench-%d-%lld", (int)getpid(),
             (long long)(now_ns() / 1000));
    return 0;
}

/* Waits until every accepted order has an outcome, or drain_s passed. */
static void orders_drain(run_t *r, double drain_s)
{
    long accepted = 0;
    for (long i = 0; i < r->n; i++)
        accepted += r->status[i] == 202 || r->status[i] == 200;
    int64_t until = now_ns() + (int64_t)(drain_s * (double)NS_PER_S);
    while (atomic_load(&r->orders.done) < accepted && now_ns() < until)
        sleep_until_ns(now_ns() + LOAD_POLL_MS * 1000000);
}

static int run_load(load_mode_t mode, const char *url, double rate, double seconds, const opts_t *o)
{
    run_t *r = xcalloc(1, sizeof(*r));
    r->mode = mode;
    r->rate = rate;
    r->n = (long)(rate * seconds);
    memcpy(r->headers, o->headers, sizeof(r->headers));
    r->n_headers = o->n_headers;
    if (url_parse(url, &r->url) != 0 || r->n < 1) {
        fprintf(stderr, "sagaload: bad URL %s or rate × seconds < 1\n", url);
        return 2;
    }
    r->lat = xcalloc((size_t)r->n, sizeof(*r->lat));
    r->status = xcalloc((size_t)r->n, sizeof(*r->status));
    pthread_t consumer, *workers = xcalloc((size_t)o->conns, sizeof(*workers));
    if (mode == MODE_ORDERS) {
        if (orders_setup(r, o) != 0)
            return 1;
        atomic_store(&r->consuming, true);
        pthread_create(&consumer, NULL, consumer_main, r);
    }
    r->t0 = now_ns() + 50 * 1000000; /* every thread is ready before the first due time */
    for (int i = 0; i < o->conns; i++)
        pthread_create(&workers[i], NULL, worker_main, r);
    for (int i = 0; i < o->conns; i++)
        pthread_join(workers[i], NULL);
    int64_t end = now_ns();
    if (mode == MODE_GET) {
        report_get(r, end, o->conns);
    } else {
        orders_drain(r, o->drain_s);
        atomic_store(&r->consuming, false);
        pthread_join(consumer, NULL);
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
        report_orders(r, seconds, o->conns);
    }
    free(workers);
    return 0;
}

/* The NUL-separated environment file as an envp array. */
static char **read_environ(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 64, n = 0, len = 0;
    char **env = xcalloc(cap + 1, sizeof(*env));
    char *item = NULL;
    while (getdelim(&item, &len, '\0', f) > 0) {
        if (n == cap) {
            cap *= 2;
            char **ne = realloc(env, (cap + 1) * sizeof(*env));
            if (ne == NULL)
                abort();
            env = ne;
        }
        env[n++] = strdup(item);
        env[n] = NULL;
    }
    free(item);
    fclose(f);
    return env;
}

static int http_status_once(const url_t *u)
{
    conn_t *c = xcalloc(1, sizeof(*c));
    c->url = u;
    c->fd = -1;
    char req[LOAD_REQ_MAX];
    int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                       u->path, u->hostport);
    const char *body;
    int status = conn_roundtrip(c, req, (size_t)len, &body);
    conn_close(c);
    free(c);
    return status;
}

/* SIGTERM, then SIGKILL if it is still there after STOP_WAIT_S; its exit status. */
static int stop_child(pid_t pid)
{
    int st = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < STOP_WAIT_S * 100; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_until_ns(now_ns() + 10 * 1000000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return 128 + SIGKILL;
}

static int run_startup(const char *url, const char *env_file, const char *log_file,
                       const char *program)
{
    url_t u;
    char **env = read_environ(env_file);
    if (url_parse(url, &u) != 0 || env == NULL) {
        fprintf(stderr, "sagaload: bad URL %s or unreadable %s\n", url, env_file);
        return 2;
    }
    int log_fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "sagaload: %s: %s\n", log_file, strerror(errno));
        return 1;
    }
    int64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int null_fd = open("/dev/null", O_RDONLY);
        dup2(null_fd, 0);
        dup2(log_fd, 1);
        dup2(log_fd, 2);
        execve(program, (char *[]){(char *)program, NULL}, env);
        _exit(127);
    }
    close(log_fd);
    if (pid < 0)
        return 1;
    int64_t ready = 0, limit = t0 + STARTUP_LIMIT_S * NS_PER_S;
    int st;
    bool exited = false;
    while (!ready && now_ns() < limit && !(exited = waitpid(pid, &st, WNOHANG) == pid)) {
        if (http_status_once(&u) == 200)
            ready = now_ns();
        else
            sleep_until_ns(now_ns() + STARTUP_POLL_NS);
    }
    int code = exited ? -1 : stop_child(pid);
    if (ready)
        printf("{\"mode\": \"startup\", \"ok\": true, \"startup_ms\": %.1f, \"exit_code\": %d}\n",
               (double)(ready - t0) / 1e6, code);
    else
        printf("{\"mode\": \"startup\", \"ok\": false, \"startup_ms\": null, \"exit_code\": %d}\n",
               code);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_sagaload get URL RATE SECONDS [-c CONNS] [-H 'Name: value']...\n"
                    "       bench_sagaload orders GATEWAY_URL RATE SECONDS -t TOKENS -p PRODUCTS"
                    " -b BROKERS [-F KAFKA_CONFIG] [-c CONNS] [-d DRAIN_SECONDS]\n"
                    "       bench_sagaload startup URL ENV_FILE LOG_FILE PROGRAM\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *mode = argv[1];
    opts_t o = {.conns = 32, .drain_s = 30, .brokers = "127.0.0.1:9092"};
    int opt;
    while ((opt = getopt(argc - 1, argv + 1, "c:d:t:p:b:F:H:")) != -1) {
        switch (opt) {
        case 'c':
            o.conns = atoi(optarg);
            break;
        case 'd':
            o.drain_s = atof(optarg);
            break;
        case 't':
            o.tokens = optarg;
            break;
        case 'p':
            o.products = optarg;
            break;
        case 'b':
            o.brokers = optarg;
            break;
        case 'F':
            o.kafka_config = optarg;
            break;
        case 'H':
            if (o.n_headers == LOAD_MAX_HEADERS)
                return usage();
            o.headers[o.n_headers++] = optarg;
            break;
        default:
            return usage();
        }
    }
    char **pos = argv + 1 + optind;
    int n_pos = argc - 1 - optind;
    if (o.conns < 1 || o.conns > LOAD_MAX_CONNS)
        return usage();
    if (strcmp(mode, "startup") == 0 && n_pos == 4)
        return run_startup(pos[0], pos[1], pos[2], pos[3]);
    if (n_pos != 3 || atof(pos[1]) <= 0 || atof(pos[2]) <= 0)
        return usage();
    if (strcmp(mode, "get") == 0)
        return run_load(MODE_GET, pos[0], atof(pos[1]), atof(pos[2]), &o);
    if (strcmp(mode, "orders") == 0)
        return run_load(MODE_ORDERS, pos[0], atof(pos[1]), atof(pos[2]), &o);
    return usage();
}
