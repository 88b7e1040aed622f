/*
 * log: one JSON line per event on stdout (docs/architecture.md §6).
 *
 *   {"ts":"2026-11-24T19:00:00.123Z","level":"info","svc":"order","msg":"order confirmed",
 *    "request_id":"...","trace_id":"...","order_id":"..."}
 *
 * The level is checked before anything is formatted. Context fields are typed and
 * escaped by the logger:
 *
 *   LOG_INFO("order confirmed", LOG_STR("order_id", id), LOG_INT("total_cents", total));
 *
 * request_id and trace_id come from the calling thread's context (log_ctx_set),
 * which the RPC and HTTP layers set for the duration of a call. Thread-safe: each
 * line is written with one write(2).
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdint.h>

typedef enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level_t;

typedef enum { LOG_T_END, LOG_T_STR, LOG_T_INT, LOG_T_DBL, LOG_T_BOOL, LOG_T_MS } log_type_t;

typedef struct log_field {
    const char *key;
    log_type_t type;
    union {
        const char *s;
        int64_t i;
        double d;
        int b;
    } v;
} log_field_t;

#define LOG_STR(k, val)  ((log_field_t){.key = (k), .type = LOG_T_STR, .v.s = (val)})
#define LOG_INT(k, val)  ((log_field_t){.key = (k), .type = LOG_T_INT, .v.i = (int64_t)(val)})
#define LOG_DBL(k, val)  ((log_field_t){.key = (k), .type = LOG_T_DBL, .v.d = (double)(val)})
#define LOG_BOOL(k, val) ((log_field_t){.key = (k), .type = LOG_T_BOOL, .v.b = !!(val)})
/* A duration given in integer µs, written as milliseconds with three decimals
 * ("duration_ms":1.234) without going through floating point. */
#define LOG_MS(k, us) ((log_field_t){.key = (k), .type = LOG_T_MS, .v.i = (int64_t)(us)})

extern log_level_t log__level;

/* log_init: names the program ("svc" field) and sets the minimum level. Call once,
 * before threads start; logging before it works with svc "-" and level info. */
void log_init(const char *svc, log_level_t level);

/* log_set_fd: where lines go (default stdout). Operator commands log to stderr so that
 * their own output on stdout stays clean. Call before threads start. */
void log_set_fd(int fd);

/* log_level_parse: "debug" | "info" | "warn" | "error" → 0 and *out, else -1. */
int log_level_parse(const char *s, log_level_t *out);

/* log_ctx_set: request and trace id for lines logged by this thread (NULL clears).
 * The strings are copied (truncated to 64 bytes). */
void log_ctx_set(const char *request_id, const char *trace_id);

/* log__write: the macros' back end; `fields` ends with a LOG_T_END entry. */
void log__write(log_level_t level, const char *msg, const log_field_t *fields);

#define LOG__AT(lvl, msg, ...)                                                                     \
    do {                                                                                           \
        if ((lvl) >= log__level)                                                                   \
            log__write((lvl), (msg), (const log_field_t[]){__VA_ARGS__ __VA_OPT__(, ){0}});        \
    } while (0)

#define LOG_DEBUG(...) LOG__AT(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define LOG_INFO(...)  LOG__AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_WARN(...)  LOG__AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_ERR(...)   LOG__AT(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
