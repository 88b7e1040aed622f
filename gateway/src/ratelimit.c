/*
 * ratelimit: INCR + PEXPIRE counters (ratelimit.h).
 */
#include "ratelimit.h"

#include <stdio.h>

/* KEYS: counter [, guard]. ARGV: window ms. Returns {count, ms left in the window},
 * or {-1, 0} without counting when a guard is given and does not exist. A key found
 * without expiry (written by something else) gets one. */
static redis_script_t ratelimit_lua =
    REDIS_SCRIPT("if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0 then\n"
                 "  return {-1, 0}\n"
                 "end\n"
                 "local c = redis.call('INCR', KEYS[1])\n"
                 "local t = redis.call('PTTL', KEYS[1])\n"
                 "if c == 1 or t < 0 then\n"
                 "  redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
                 "  t = tonumber(ARGV[1])\n"
                 "end\n"
                 "return {c, t}\n");

void ratelimit_key(char out[RATELIMIT_KEY_MAX], const char *prefix, const char *name,
                   const char *subject)
{
    snprintf(out, RATELIMIT_KEY_MAX, "%srl:%s:%s", prefix, name, subject);
}

int ratelimit_hit(redis_pool_t *pool, const char *key, int64_t limit, int64_t window_ms,
                  ratelimit_state_t *st, err_t *err)
{
    return ratelimit_hit_if(pool, NULL, key, limit, window_ms, st, err);
}

int ratelimit_hit_if(redis_pool_t *pool, const char *guard, const char *key, int64_t limit,
                     int64_t window_ms, ratelimit_state_t *st, err_t *err)
{
    *st = (ratelimit_state_t){.limit = limit, .window_s = (window_ms + 999) / 1000, .reset_s = 1};
    char window[24];
    snprintf(window, sizeof(window), "%lld", (long long)window_ms);
    const char *argv[] = {guard ? "2" : "1", key, guard ? guard : window, window};
    redisReply *r = redis_pool_eval(pool, &ratelimit_lua, guard ? 4 : 3, argv, err);
    if (r == NULL)
        return err->code;
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        rc = err_set(err, ERR_INTERNAL, "rate limit script answered unexpectedly");
    } else if (r->element[0]->integer < 0) {
        rc = err_set(err, ERR_NOT_FOUND, "%s does not exist", guard);
    } else {
        long long count = r->element[0]->integer, ms = r->element[1]->integer;
        st->reset_s = ms > 0 ? (ms + 999) / 1000 : 1;
        st->remaining = count < limit ? limit - count : 0;
        if (count > limit)
            rc = err_set(err, ERR_EXHAUSTED, "rate limit exceeded");
    }
    freeReplyObject(r);
    return rc;
}
