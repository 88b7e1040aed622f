/*
 * ratelimit: fixed-window counters in Redis (docs/architecture.md §5).
 *
 * A counter key lives for one window: the first hit creates it with the
 * window's expiry (INCR and PEXPIRE in one Lua script, so a crash between them
 * cannot leave a counter without expiry). A hit beyond the limit is refused with
 * the time until the window ends, which becomes Retry-After. Fixed windows allow
 * up to twice the limit across a window boundary; for login throttling that is
 * acceptable and costs one key per subject.
 *
 * Keys: <prefix>rl:<name>:<subject>, e.g. "gw:rl:login-ip:127.0.0.1". Subjects
 * that are personal data (an email) are hashed by the caller.
 */
#ifndef GATEWAY_RATELIMIT_H
#define GATEWAY_RATELIMIT_H

#include <stdint.h>

#include "common/err.h"
#include "redis_pool.h"

#define RATELIMIT_KEY_MAX 256

/* Where a counter stands after a hit. */
typedef struct ratelimit_state {
    int64_t limit;     /* hits allowed per window */
    int64_t window_s;  /* the window, in seconds (rounded up) */
    int64_t remaining; /* hits left in this window (0 when refused) */
    int64_t reset_s;   /* seconds until the window ends, ≥ 1: Retry-After when refused */
} ratelimit_state_t;

/* ratelimit_hit: counts one hit on key `key` for a window of window_ms and fills
 * *st. Returns 0 when within `limit`; ERR_EXHAUSTED when over it; ERR_UNAVAILABLE /
 * ERR_INTERNAL when Redis fails. Thread-safe. */
int ratelimit_hit(redis_pool_t *pool, const char *key, int64_t limit, int64_t window_ms,
                  ratelimit_state_t *st, err_t *err);

/* ratelimit_hit_if: the same, in the same round trip, only when key `guard` exists
 * (e.g. the caller's session); ERR_NOT_FOUND, counting nothing, when it does not. */
int ratelimit_hit_if(redis_pool_t *pool, const char *guard, const char *key, int64_t limit,
                     int64_t window_ms, ratelimit_state_t *st, err_t *err);

/* ratelimit_key: "<prefix>rl:<name>:<subject>" into out. */
void ratelimit_key(char out[RATELIMIT_KEY_MAX], const char *prefix, const char *name,
                   const char *subject);

#endif
