/*
 * ratelimit: INCR + PEXPIRE counters (ratelimit.h).
 */
#include "ratelimit.h"

#include <stdio.h>

/* KEYS: counter. ARGV: window ms. Returns {count, ms left in the window}. A key
 * found without expiry (written by something else) gets one. */
static const char ratelimit_lua[] = "local c = redis.call('INCR', KEYS[1])\n"
                                    "local t = redis.call('PTTL', KEYS[1])\n"
                                    "if c == 1 or t < 0 then\n"
                                    "  redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
                                    "  t = tonumber(ARGV[1])\n"
                                    "end\n"
                                    "return {c, t}\n";

void ratelimit_key(char out[RATELIMIT_KEY_MAX], const char *prefix, const char *name,
                   const char *subject)
{
    snprintf(out, RATELIMIT_KEY_MAX, "%srl:%s:%s", prefix, name, subject);
}

int ratelimit_hit(redis_pool_t *pool, const char *key, int64_t limit, int64_t window_ms,
                  int64_t *retry_after_s, err_t *err)
{
    char window[24];
    snprintf(window, sizeof(window), "%lld", (long long)window_ms);
    const char *argv[] = {"EVAL", ratelimit_lua, "1", key, window};
    redisReply *r = redis_pool_command(pool, 5, argv, NULL, err);
    if (r == NULL)
        return err->code;
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        rc = err_set(err, ERR_INTERNAL, "rate limit script answered unexpectedly");
    } else if (r->element[0]->integer > limit) {
        long long ms = r->element[1]->integer;
        *retry_after_s = ms > 0 ? (ms + 999) / 1000 : 1;
        rc = err_set(err, ERR_EXHAUSTED, "rate limit exceeded");
    }
    freeReplyObject(r);
    return rc;
}
