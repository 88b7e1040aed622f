/*
 * trace: parsing, validating and continuing the W3C trace context (trace.h).
 */
#include "common/trace.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TRACE_TID_AT  3  /* offset of the trace id */
#define TRACE_SPAN_AT 36 /* offset of the parent id */
#define TRACE_FLAG_AT 53 /* offset of the flags */

static bool trace_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool trace_zeros(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0')
            return false;
    return true;
}

bool trace_parent_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strlen(s);
    if (n < TRACE_PARENT_LEN || s[2] != '-' || s[TRACE_SPAN_AT - 1] != '-' ||
        s[TRACE_FLAG_AT - 1] != '-')
        return false;
    if (!trace_hex(s, 2) || strncmp(s, "ff", 2) == 0)
        return false;
    if (!trace_hex(s + TRACE_TID_AT, TRACE_ID_LEN) || trace_zeros(s + TRACE_TID_AT, TRACE_ID_LEN) ||
        !trace_hex(s + TRACE_SPAN_AT, TRACE_SPAN_ID_LEN) ||
        trace_zeros(s + TRACE_SPAN_AT, TRACE_SPAN_ID_LEN) || !trace_hex(s + TRACE_FLAG_AT, 2))
        return false;
    /* Version 00 has exactly these fields; later versions may append "-…". */
    if (strncmp(s, "00", 2) == 0)
        return n == TRACE_PARENT_LEN;
    return n == TRACE_PARENT_LEN || s[TRACE_PARENT_LEN] == '-';
}

/* The value of one lower-case hex digit (already checked). */
static unsigned trace_nibble(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

bool trace_parse(const char *traceparent, trace_ctx_t *out)
{
    if (!trace_parent_valid(traceparent))
        return false;
    memcpy(out->trace_id, traceparent + TRACE_TID_AT, TRACE_ID_LEN);
    out->trace_id[TRACE_ID_LEN] = '\0';
    memcpy(out->span_id, traceparent + TRACE_SPAN_AT, TRACE_SPAN_ID_LEN);
    out->span_id[TRACE_SPAN_ID_LEN] = '\0';
    out->flags = (uint8_t)(trace_nibble(traceparent[TRACE_FLAG_AT]) << 4 |
                           trace_nibble(traceparent[TRACE_FLAG_AT + 1]));
    return true;
}

/* Trace and span ids need to be unique, not secret (W3C Trace Context §"Considerations
 * for trace-id field generation"): each thread runs xoshiro256** seeded once from
 * getrandom(2) instead of a system call and 16 snprintf per id. Nothing secret
 * (session ids, tokens) may come from here. */
static _Thread_local uint64_t trace_rng[4];
static _Thread_local bool trace_rng_seeded;

static uint64_t trace_rotl(uint64_t x, int k)
{
    return x << k | x >> (64 - k);
}

static uint64_t trace_rng_next(void)
{
    if (!trace_rng_seeded) {
        unsigned char *p = (unsigned char *)trace_rng;
        size_t got = 0;
        while (got < sizeof(trace_rng)) {
            ssize_t r = getrandom(p + got, sizeof(trace_rng) - got, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                fprintf(stderr, "fatal: getrandom: %s\n", strerror(errno));
                abort();
            }
            got += (size_t)r;
        }
        trace_rng_seeded = true;
    }
    uint64_t *s = trace_rng;
    uint64_t out = trace_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = trace_rotl(s[3], 45);
    return out;
}

/* n random bytes as 2n lower-case hex digits and a NUL, never all zeros (W3C
 * forbids them). */
static void trace_random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    do {
        for (size_t i = 0; i < 2 * n; i += 16) {
            uint64_t v = trace_rng_next();
            for (size_t j = 0; j < 16 && i + j < 2 * n; j++, v >>= 4)
                out[i + j] = hex[v & 15];
        }
        out[2 * n] = '\0';
    } while (trace_zeros(out, 2 * n));
}

void trace_new(trace_ctx_t *out)
{
    trace_random_hex(out->trace_id, TRACE_ID_LEN / 2);
    trace_random_hex(out->span_id, TRACE_SPAN_ID_LEN / 2);
    out->flags = TRACE_FLAG_SAMPLED;
}

void trace_child(const trace_ctx_t *parent, trace_ctx_t *out)
{
    if (out != parent)
        *out = *parent;
    trace_random_hex(out->span_id, TRACE_SPAN_ID_LEN / 2);
}

void trace_format(const trace_ctx_t *t, char out[TRACE_PARENT_LEN + 1])
{
    snprintf(out, TRACE_PARENT_LEN + 1, "00-%.32s-%.16s-%02x", t->trace_id, t->span_id,
             (unsigned)t->flags);
}

bool trace_id_of(const char *traceparent, char out[TRACE_ID_LEN + 1])
{
    out[0] = '\0';
    if (!trace_parent_valid(traceparent))
        return false;
    memcpy(out, traceparent + TRACE_TID_AT, TRACE_ID_LEN);
    out[TRACE_ID_LEN] = '\0';
    return true;
}
