/*
 * log: JSON lines built in a stack buffer and written with one write(2), so lines
 * from concurrent threads never interleave (a pipe write of up to PIPE_BUF bytes is
 * atomic; longer lines still go out in one call on a regular file or a terminal).
 *
 * Every string goes through one escaper that also repairs invalid UTF-8 (each bad
 * byte becomes U+FFFD), so a line is valid JSON whatever a caller passes in. A line
 * is capped at LOG_LINE_MAX bytes: a value that does not fit is cut and ends with
 * "…", and fields that no longer fit at all are dropped.
 */
#include "common/log.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

#define LOG_LINE_MAX  8192
#define LOG_VALUE_MAX 4096 /* escaped bytes of one value, so one field can't evict all */
#define LOG_CTX_MAX   64
#define LOG_SVC_MAX   64
/* Kept free until the end of the line: an ellipsis, a quote, "}\n". */
#define LOG_TAIL_RESERVE 8

log_level_t log__level = LOG_LEVEL_INFO;
static int log_fd = STDOUT_FILENO;

static char log_svc[LOG_SVC_MAX + 1] = "-";

static _Thread_local char log_request_id[LOG_CTX_MAX + 1];
static _Thread_local char log_trace_id[LOG_CTX_MAX + 1];

typedef struct log_buf {
    char data[LOG_LINE_MAX];
    size_t len;
} log_buf_t;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

static void log_copy(char *dst, size_t size, const char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void log_set_fd(int fd)
{
    log_fd = fd;
}

void log_init(const char *svc, log_level_t level)
{
    log_copy(log_svc, sizeof(log_svc), svc != NULL ? svc : "-");
    log__level = level;
}

int log_level_parse(const char *s, log_level_t *out)
{
    if (s == NULL)
        return -1;
    for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void log_ctx_set(const char *request_id, const char *trace_id)
{
    log_copy(log_request_id, sizeof(log_request_id), request_id);
    log_copy(log_trace_id, sizeof(log_trace_id), trace_id);
}

/* Room left for content, keeping the tail reserve (which a cut value may dip into). */
static size_t log_room(const log_buf_t *b)
{
    if (b->len + LOG_TAIL_RESERVE >= LOG_LINE_MAX)
        return 0;
    return LOG_LINE_MAX - LOG_TAIL_RESERVE - b->len;
}

static void log_put(log_buf_t *b, const char *s, size_t n)
{
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* Length of the valid UTF-8 sequence at s (at most `avail` bytes), or 0 if the byte
 * at s does not start one: overlong forms, surrogates and code points past U+10FFFF
 * are rejected as RFC 3629 requires. */
static size_t log_utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    return n;
}

/* The letter after the backslash in JSON's two-character escape of c ('n' for a
 * newline), or 0 when c has none. */
static char log_short_escape(unsigned char c)
{
    switch (c) {
    case '"':
    case '\\':
        return (char)c;
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

/* The JSON form of one input character: into out (at most 6 bytes), returns its
 * length and sets *consumed to the input bytes it stands for. */
static size_t log_escape_one(const unsigned char *s, size_t avail, char out[6], size_t *consumed)
{
    unsigned char c = s[0];
    *consumed = 1;
    char letter = log_short_escape(c);
    if (letter != 0) {
        out[0] = '\\';
        out[1] = letter;
        return 2;
    }
    if (c < 0x20) {
        static const char hex[] = "0123456789abcdef";
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 0xF];
        return 6;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    size_t n = log_utf8_len(s, avail);
    if (n == 0) {
        memcpy(out, "\\ufffd", 6);
        return 6;
    }
    memcpy(out, s, n);
    *consumed = n;
    return n;
}

/* A quoted, escaped JSON string of at most LOG_VALUE_MAX bytes; cut with "…". */
static void log_put_string(log_buf_t *b, const char *s)
{
    log_put(b, "\"", 1);
    size_t budget = log_room(b) < LOG_VALUE_MAX ? log_room(b) : LOG_VALUE_MAX;
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left > 0) {
        /* A run of printable ASCII needing no escape goes in with one copy. */
        size_t run = 0;
        while (run < left && run < budget && p[run] >= 0x20 && p[run] < 0x7f && p[run] != '"' &&
               p[run] != '\\')
            run++;
        if (run > 0) {
            log_put(b, (const char *)p, run);
            budget -= run;
            p += run;
            left -= run;
            continue;
        }
        char out[6];
        size_t consumed;
        size_t n = log_escape_one(p, left, out, &consumed);
        if (n > budget) {
            log_put(b, "\xe2\x80\xa6", 3); /* "…", within the tail reserve */
            break;
        }
        log_put(b, out, n);
        budget -= n;
        p += consumed;
        left -= consumed;
    }
    log_put(b, "\"", 1);
}

/* `,"key":` if the key and a short value still fit, else false (field dropped). */
static bool log_put_key(log_buf_t *b, const char *key)
{
    size_t klen = strlen(key);
    /* Worst case every key byte escapes to 6, plus quotes, comma, colon and room for
     * a value of at least a few bytes. */
    if (klen * 6 + 32 > log_room(b))
        return false;
    log_put(b, ",", 1);
    log_put_string(b, key);
    log_put(b, ":", 1);
    return true;
}

/* Decimal digits of v into the end of tmp; returns where they start. */
static char *log_digits(uint64_t v, char *end)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return end;
}

static void log_put_int(log_buf_t *b, int64_t v)
{
    char tmp[24], *end = tmp + sizeof(tmp);
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *p = log_digits(mag, end);
    if (v < 0)
        *--p = '-';
    log_put(b, p, (size_t)(end - p));
}

/* µs as milliseconds with three decimals: 1234 → 1.234, -5 → -0.005. */
static void log_put_ms(log_buf_t *b, int64_t us)
{
    char tmp[32], *end = tmp + sizeof(tmp);
    uint64_t mag = us < 0 ? 0 - (uint64_t)us : (uint64_t)us;
    char *p = log_digits(mag % 1000 + 1000, end); /* "1xyz": keeps the leading zeros */
    p[0] = '.';
    p = log_digits(mag / 1000, p);
    if (us < 0)
        *--p = '-';
    log_put(b, p, (size_t)(end - p));
}

static void log_put_number(log_buf_t *b, const log_field_t *f)
{
    char tmp[64];
    int n;
    switch (f->type) {
    case LOG_T_INT:
        log_put_int(b, f->v.i);
        return;
    case LOG_T_MS:
        log_put_ms(b, f->v.i);
        return;
    case LOG_T_BOOL:
        log_put(b, f->v.b ? "true" : "false", f->v.b ? 4 : 5);
        return;
    default:
        /* JSON has no NaN or infinity; the shortest text that reads back exactly. */
        if (!isfinite(f->v.d)) {
            n = snprintf(tmp, sizeof(tmp), "null");
        } else {
            n = snprintf(tmp, sizeof(tmp), "%.15g", f->v.d);
            if (strtod(tmp, NULL) != f->v.d)
                n = snprintf(tmp, sizeof(tmp), "%.17g", f->v.d);
        }
        break;
    }
    log_put(b, tmp, (size_t)n);
}

static void log_put_field(log_buf_t *b, const log_field_t *f)
{
    if (f->key == NULL || !log_put_key(b, f->key))
        return;
    if (f->type == LOG_T_STR)
        log_put_string(b, f->v.s != NULL ? f->v.s : "");
    else
        log_put_number(b, f);
}

/* "2026-11-24T19:00:00.123Z": the log keeps milliseconds. The text up to the
 * seconds is formatted once per second and thread. */
static void log_put_ts(log_buf_t *b)
{
    static _Thread_local int64_t cached_sec = -1;
    static _Thread_local char prefix[32]; /* {"ts":"2026-11-24T19:00:00 */
    static _Thread_local size_t prefix_len;
    int64_t us = clock_now_us();
    int64_t sec = us / 1000000;
    if (sec != cached_sec) {
        time_t secs = (time_t)sec;
        struct tm tm;
        gmtime_r(&secs, &tm);
        int n = snprintf(prefix, sizeof(prefix), "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec);
        prefix_len = n > 0 && (size_t)n < sizeof(prefix) ? (size_t)n : 0;
        cached_sec = sec;
    }
    log_put(b, prefix, prefix_len);
    int ms = (int)(us % 1000000 / 1000);
    char frac[6] = {
        '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '"'};
    log_put(b, frac, sizeof(frac));
}

static void log_emit(const log_buf_t *b)
{
    const char *p = b->data;
    size_t left = b->len;
    while (left > 0) {
        ssize_t n = write(log_fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing stdout */
        }
        p += n;
        left -= (size_t)n;
    }
}

void log__write(log_level_t level, const char *msg, const log_field_t *fields)
{
    if (level < log__level)
        return;
    log_buf_t b;
    b.len = 0;
    log_put_ts(&b);
    log_put(&b, ",\"level\":\"", 10);
    const char *name = log_level_names[level <= LOG_LEVEL_ERROR ? level : LOG_LEVEL_ERROR];
    log_put(&b, name, strlen(name));
    log_put(&b, "\",\"svc\":", 8);
    log_put_string(&b, log_svc);
    log_put(&b, ",\"msg\":", 7);
    log_put_string(&b, msg != NULL ? msg : "");
    if (log_request_id[0] != '\0')
        log_put_field(&b, &LOG_STR("request_id", log_request_id));
    if (log_trace_id[0] != '\0')
        log_put_field(&b, &LOG_STR("trace_id", log_trace_id));
    for (const log_field_t *f = fields; f != NULL && f->type != LOG_T_END; f++)
        log_put_field(&b, f);
    log_put(&b, "}\n", 2);
    log_emit(&b);
}
