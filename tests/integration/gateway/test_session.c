/*
 * session and ratelimit against the test stack's real Redis as the gateway's ACL
 * user (REDIS_URL, REDIS_PASSWORD_FILE): every command the gateway runs must pass
 * that user's rules. Every run uses its own key prefix under gw: and deletes its
 * keys at the end, as Redis's admin (REDIS_ADMIN_URL, REDIS_ADMIN_PASSWORD_FILE),
 * who also does what the gateway may not (KEYS, INFO, SCRIPT FLUSH).
 *
 * The "sentinel" case needs no stack: it parses REDIS_SENTINELS and runs a master, a
 * replica and a Sentinel of its own (redis-server on free ports) to fail over.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "check_util.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "crypto.h"
#include "ratelimit.h"
#include "redis_pool.h"
#include "session.h"
#include "stack_env.h"

static redis_pool_t *pool;  /* as the gateway's user */
static redis_pool_t *admin; /* as the admin */
static char prefix[64];

static redis_pool_t *pool_as(const char *url_var, const char *password_file_var)
{
    const char *url = getenv(url_var);
    ck_assert_msg(url != NULL, "%s is not set (run with the test stack's env)", url_var);
    char *password = stack_env_secret(password_file_var);
    err_t err = ERR_INIT;
    redis_pool_t *p = redis_pool_new(url, password, 4, 2000, &err);
    free(password);
    ck_assert_msg(p != NULL, "%s", err.msg);
    return p;
}

static void setup(void)
{
    pool = pool_as("REDIS_URL", "REDIS_PASSWORD_FILE");
    admin = pool_as("REDIS_ADMIN_URL", "REDIS_ADMIN_PASSWORD_FILE");
    char id[UUID_STR_LEN];
    uuid_new(id);
    snprintf(prefix, sizeof(prefix), "gw:test:%.8s:", id + 28);
}

/* Deletes every key under this run's prefix. */
static void teardown(void)
{
    err_t err = ERR_INIT;
    char pattern[80];
    snprintf(pattern, sizeof(pattern), "%s*", prefix);
    const char *argv[] = {"KEYS", pattern};
    redisReply *r = redis_pool_command(admin, 2, argv, NULL, &err);
    for (size_t i = 0; r != NULL && i < r->elements; i++) {
        const char *del[] = {"DEL", r->element[i]->str};
        redisReply *d = redis_pool_command(admin, 2, del, NULL, &err);
        if (d != NULL)
            freeReplyObject(d);
    }
    if (r != NULL)
        freeReplyObject(r);
    redis_pool_free(pool);
    redis_pool_free(admin);
}

/* What the gateway's guard sees: session_key exists. 0, or ERR_UNAUTHENTICATED. */
static int session_alive(session_store_t *s, const char *sid)
{
    char skey[SESSION_KEY_MAX];
    session_key(s, sid, skey);
    const char *argv[] = {"EXISTS", skey};
    err_t err = ERR_INIT;
    redisReply *r = redis_pool_command(pool, 2, argv, NULL, &err);
    ck_assert_msg(r != NULL, "%s", err.msg);
    int rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : ERR_UNAUTHENTICATED;
    freeReplyObject(r);
    return rc;
}

START_TEST(test_session_create_check_and_logout)
{
    session_store_t *s = session_store_new(pool, prefix, 60000);
    session_grant_t g;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_create(s, "user-1", "customer", &g, &err), 0);
    ck_assert_int_eq(strlen(g.refresh_token), 43);
    ck_assert_int_eq(strlen(g.sid), 36);
    ck_assert_int_eq(g.expires_in_ms, 60000);
    ck_assert_int_eq(session_alive(s, g.sid), 0);
    ck_assert_int_eq(session_delete(s, g.sid, &err), 0);
    ck_assert_int_eq(session_alive(s, g.sid), ERR_UNAUTHENTICATED);
    session_grant_t r;
    ck_assert_int_eq(session_refresh(s, g.refresh_token, &r, &err), ERR_UNAUTHENTICATED);
    ck_assert_int_eq(session_delete(s, g.sid, &err), 0); /* twice is fine */
    session_store_free(s);
}
END_TEST

START_TEST(test_session_refresh_rotates_the_token)
{
    session_store_t *s = session_store_new(pool, prefix, 60000);
    session_grant_t g, r1, r2;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_create(s, "user-2", "admin", &g, &err), 0);
    ck_assert_int_eq(session_refresh(s, g.refresh_token, &r1, &err), 0);
    ck_assert_str_eq(r1.sid, g.sid);
    ck_assert_str_eq(r1.user_id, "user-2");
    ck_assert_str_eq(r1.role, "admin");
    ck_assert_str_ne(r1.refresh_token, g.refresh_token);
    ck_assert_int_gt(r1.expires_in_ms, 0);
    ck_assert_int_le(r1.expires_in_ms, 60000);
    ck_assert_int_eq(session_refresh(s, r1.refresh_token, &r2, &err), 0);
    ck_assert_str_ne(r2.refresh_token, r1.refresh_token);
    ck_assert_int_eq(session_alive(s, g.sid), 0);
    session_store_free(s);
}
END_TEST

START_TEST(test_session_reused_refresh_token_revokes_the_session)
{
    session_store_t *s = session_store_new(pool, prefix, 60000);
    session_grant_t g, r1, r2;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_create(s, "user-3", "customer", &g, &err), 0);
    ck_assert_int_eq(session_refresh(s, g.refresh_token, &r1, &err), 0);
    /* The first token again: a copy is in someone else's hands. */
    ck_assert_int_eq(session_refresh(s, g.refresh_token, &r2, &err), ERR_UNAUTHENTICATED);
    ck_assert_ptr_nonnull(strstr(err.msg, "reuse"));
    ck_assert_int_eq(session_alive(s, g.sid), ERR_UNAUTHENTICATED);
    /* The legitimate newest token dies with the session. */
    ck_assert_int_eq(session_refresh(s, r1.refresh_token, &r2, &err), ERR_UNAUTHENTICATED);
    session_store_free(s);
}
END_TEST

START_TEST(test_session_rejects_unknown_and_malformed_tokens)
{
    session_store_t *s = session_store_new(pool, prefix, 60000);
    session_grant_t r;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_refresh(s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &r, &err),
                     ERR_UNAUTHENTICATED);
    ck_assert_int_eq(session_refresh(s, "short", &r, &err), ERR_UNAUTHENTICATED);
    ck_assert_int_eq(session_refresh(s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", &r, &err),
                     ERR_UNAUTHENTICATED);
    ck_assert_int_eq(session_alive(s, "no-such-session"), ERR_UNAUTHENTICATED);
    session_store_free(s);
}
END_TEST

START_TEST(test_session_expires_absolutely_and_refresh_does_not_extend_it)
{
    session_store_t *s = session_store_new(pool, prefix, 800);
    session_grant_t g, r1;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_create(s, "user-4", "customer", &g, &err), 0);
    clock_sleep_ms(400);
    ck_assert_int_eq(session_refresh(s, g.refresh_token, &r1, &err), 0);
    ck_assert_int_le(r1.expires_in_ms, 400);
    clock_sleep_ms(500);
    ck_assert_int_eq(session_alive(s, g.sid), ERR_UNAUTHENTICATED);
    session_grant_t r2;
    ck_assert_int_eq(session_refresh(s, r1.refresh_token, &r2, &err), ERR_UNAUTHENTICATED);
    session_store_free(s);
}
END_TEST

START_TEST(test_session_stores_refresh_tokens_only_hashed)
{
    session_store_t *s = session_store_new(pool, prefix, 60000);
    session_grant_t g;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_create(s, "user-5", "customer", &g, &err), 0);
    char hash[CRYPTO_SHA256_HEX_LEN], key[160];
    crypto_sha256_hex(g.refresh_token, strlen(g.refresh_token), hash);
    snprintf(key, sizeof(key), "%srt:%s", prefix, hash);
    const char *get[] = {"GET", key};
    redisReply *r = redis_pool_command(pool, 2, get, NULL, &err);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_ptr_nonnull(strstr(r->str, g.sid));
    freeReplyObject(r);
    char pattern[96];
    snprintf(pattern, sizeof(pattern), "*%s*", g.refresh_token);
    const char *keys[] = {"KEYS", pattern};
    r = redis_pool_command(admin, 2, keys, NULL, &err);
    ck_assert_int_eq(r->elements, 0);
    freeReplyObject(r);
    session_store_free(s);
}
END_TEST

typedef struct race {
    session_store_t *s;
    const char *token;
    int rc;
} race_t;

static void *race_refresh(void *arg)
{
    race_t *r = arg;
    session_grant_t g;
    err_t err = ERR_INIT;
    r->rc = session_refresh(r->s, r->token, &g, &err);
    return NULL;
}

START_TEST(test_session_concurrent_refreshes_let_one_win)
{
    session_store_t *s = session_store_new(pool, prefix, 60000);
    session_grant_t g;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_create(s, "user-6", "customer", &g, &err), 0);
    race_t a = {s, g.refresh_token, 1}, b = {s, g.refresh_token, 1};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, race_refresh, &a);
    pthread_create(&tb, NULL, race_refresh, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert_int_eq((a.rc == 0) + (b.rc == 0), 1);
    session_store_free(s);
}
END_TEST

START_TEST(test_ratelimit_refuses_the_eleventh_hit_with_retry_after)
{
    char key[RATELIMIT_KEY_MAX];
    ratelimit_key(key, prefix, "login-ip", "127.0.0.1");
    err_t err = ERR_INIT;
    ratelimit_state_t st;
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(ratelimit_hit(pool, key, 10, 60000, &st, &err), 0);
        ck_assert_int_eq(st.remaining, 9 - i); /* what RateLimit's r= says */
        ck_assert_int_eq(st.limit, 10);
        ck_assert_int_eq(st.window_s, 60);
    }
    ck_assert_int_eq(ratelimit_hit(pool, key, 10, 60000, &st, &err), ERR_EXHAUSTED);
    ck_assert_int_eq(st.remaining, 0);
    ck_assert_int_ge(st.reset_s, 1);
    ck_assert_int_le(st.reset_s, 60);
    /* Another subject has its own counter. */
    ratelimit_key(key, prefix, "login-ip", "127.0.0.2");
    ck_assert_int_eq(ratelimit_hit(pool, key, 10, 60000, &st, &err), 0);
}
END_TEST

START_TEST(test_ratelimit_guarded_counts_only_while_the_session_lives)
{
    session_store_t *s = session_store_new(pool, prefix, 60000);
    session_grant_t g;
    err_t err = ERR_INIT;
    ck_assert_int_eq(session_create(s, "user-7", "customer", &g, &err), 0);
    char skey[SESSION_KEY_MAX], key[RATELIMIT_KEY_MAX];
    session_key(s, g.sid, skey);
    ratelimit_key(key, prefix, "user", "user-7");
    ratelimit_state_t st;
    ck_assert_int_eq(ratelimit_hit_if(pool, skey, key, 2, 60000, &st, &err), 0);
    ck_assert_int_eq(ratelimit_hit_if(pool, skey, key, 2, 60000, &st, &err), 0);
    ck_assert_int_eq(ratelimit_hit_if(pool, skey, key, 2, 60000, &st, &err), ERR_EXHAUSTED);
    ck_assert_int_eq(session_delete(s, g.sid, &err), 0);
    /* A revoked session's token spends nothing of its user's budget. */
    ratelimit_key(key, prefix, "user", "user-7b");
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ratelimit_hit_if(pool, skey, key, 2, 60000, &st, &err), ERR_NOT_FOUND);
    ck_assert_int_eq(ratelimit_hit(pool, key, 1, 60000, &st, &err), 0);
    session_store_free(s);
}
END_TEST

/* auth's verdicts that read Redis: a live session counts against the budget and
 * passes (or is forbidden for want of the role), a spent budget is rate-limited,
 * a revoked session is unauthenticated and counts nothing. */
START_TEST(test_auth_verdict_follows_the_session_the_budget_and_the_role)
{
    err_t err = ERR_INIT;
    jwt_keys_t *k = jwt_keys_new(&(jwt_keys_opts_t){.alg = "HS256",
                                                    .secret = "0123456789abcdef0123456789abcdef",
                                                    .issuer = "shop-test",
                                                    .audience = "shop-test",
                                                    .ttl_s = 900},
                                 &err);
    ck_assert_msg(k != NULL, "%s", err.msg);
    session_store_t *s = session_store_new(pool, prefix, 60000);
    auth_t *a = auth_new(&(auth_opts_t){.keys = k,
                                        .redis = pool,
                                        .store = s,
                                        .redis_prefix = prefix,
                                        .user_request_limit = 2,
                                        .user_window_ms = 60000});
    session_grant_t g;
    ck_assert_int_eq(session_create(s, "user-9", "customer", &g, &err), 0);
    int64_t now = clock_now_us() / 1000000;
    char *t = jwt_token_issue(k, "user-9", "customer", g.sid, now, &err);
    ck_assert_msg(t != NULL, "%s", err.msg);
    char h[JWT_TOKEN_MAX];
    snprintf(h, sizeof(h), "Bearer %s", t);
    free(t);
    auth_verdict_t v;
    auth_check(a, AUTH_USER, h, now, &v);
    ck_assert_int_eq(v.outcome, AUTH_OK);
    ck_assert(v.identified && v.counted);
    ck_assert_str_eq(v.claims.sub, "user-9");
    ck_assert_str_eq(v.policy, "user");
    ck_assert_int_eq(v.budget.limit, 2);
    ck_assert_int_eq(v.budget.remaining, 1);
    auth_check(a, AUTH_ADMIN, h, now, &v);
    ck_assert_int_eq(v.outcome, AUTH_FORBIDDEN);
    ck_assert(v.identified && v.counted);
    ck_assert_int_eq(v.budget.remaining, 0);
    auth_check(a, AUTH_OPTIONAL, h, now, &v);
    ck_assert_int_eq(v.outcome, AUTH_RATE_LIMITED);
    ck_assert(v.counted && !v.identified);
    ck_assert_int_ge(v.budget.reset_s, 1);
    ck_assert_int_eq(session_delete(s, g.sid, &err), 0);
    auth_check(a, AUTH_USER, h, now, &v);
    ck_assert_int_eq(v.outcome, AUTH_UNAUTHENTICATED);
    ck_assert(!v.token_missing && !v.identified && !v.counted);
    auth_free(a);
    session_store_free(s);
    jwt_keys_free(k);
}
END_TEST

START_TEST(test_ratelimit_window_resets)
{
    char key[RATELIMIT_KEY_MAX];
    ratelimit_key(key, prefix, "user", "u-1");
    err_t err = ERR_INIT;
    ratelimit_state_t st;
    ck_assert_int_eq(ratelimit_hit(pool, key, 2, 300, &st, &err), 0);
    ck_assert_int_eq(ratelimit_hit(pool, key, 2, 300, &st, &err), 0);
    ck_assert_int_eq(ratelimit_hit(pool, key, 2, 300, &st, &err), ERR_EXHAUSTED);
    ck_assert_int_eq(st.reset_s, 1);
    clock_sleep_ms(400);
    ck_assert_int_eq(ratelimit_hit(pool, key, 2, 300, &st, &err), 0);
}
END_TEST

START_TEST(test_redis_pool_reports_unreachable_and_bad_urls)
{
    err_t err = ERR_INIT;
    redis_pool_t *p = redis_pool_new("redis://127.0.0.1:1", NULL, 1, 300, &err);
    ck_assert_ptr_nonnull(p);
    const char *argv[] = {"PING"};
    ck_assert_ptr_null(redis_pool_command(p, 1, argv, NULL, &err));
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
    ratelimit_state_t st;
    ck_assert_int_eq(ratelimit_hit_if(p, "g", "k", 1, 1000, &st, &err), ERR_UNAVAILABLE);
    redis_pool_free(p);
    ck_assert_ptr_null(redis_pool_new("http://127.0.0.1:6379", NULL, 1, 300, &err));
    ck_assert_ptr_null(redis_pool_new("redis://127.0.0.1", NULL, 1, 300, &err));
    ck_assert_ptr_null(redis_pool_new("redis://127.0.0.1:99999", NULL, 1, 300, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
}
END_TEST

/* A named ACL user needs a password: from the caller (REDIS_PASSWORD) or the URL. */
START_TEST(test_redis_pool_refuses_a_user_without_a_password)
{
    err_t err = ERR_INIT;
    ck_assert_ptr_null(redis_pool_new("redis://gateway@127.0.0.1:1", NULL, 1, 300, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "gateway"));
    ck_assert_ptr_null(redis_pool_new("redis://gateway@127.0.0.1:1", "", 1, 300, &err));
    redis_pool_t *p = redis_pool_new("redis://gateway:pw@127.0.0.1:1", NULL, 1, 300, &err);
    ck_assert_ptr_nonnull(p);
    redis_pool_free(p);
    p = redis_pool_new("redis://gateway@127.0.0.1:1", "pw", 1, 300, &err);
    ck_assert_ptr_nonnull(p);
    redis_pool_free(p);
}
END_TEST

/* A wrong password: every command fails UNAVAILABLE with Redis's answer and the
 * user's name, never the password; the pool says its credentials were refused
 * (what /readyz reports) until they are accepted. */
START_TEST(test_redis_pool_wrong_password_is_refused_and_named)
{
    err_t err = ERR_INIT;
    const char *secret = "not-the-gateway-password";
    redis_pool_t *p = redis_pool_new(getenv("REDIS_URL"), secret, 1, 2000, &err);
    ck_assert_msg(p != NULL, "%s", err.msg);
    ck_assert(!redis_pool_auth_refused(p));
    const char *ping[] = {"PING"};
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_null(redis_pool_command(p, 1, ping, NULL, &err));
        ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
        ck_assert_msg(strstr(err.msg, "refused the credentials of user gateway") != NULL, "%s",
                      err.msg);
        ck_assert_msg(strstr(err.msg, "WRONGPASS") != NULL, "%s", err.msg);
        ck_assert_ptr_null(strstr(err.msg, secret));
        ck_assert(redis_pool_auth_refused(p));
    }
    redis_pool_free(p);
    /* The right one is accepted (the fixture's pool). */
    redisReply *r = redis_pool_command(pool, 1, ping, NULL, &err);
    ck_assert_msg(r != NULL, "%s", err.msg);
    freeReplyObject(r);
    ck_assert(!redis_pool_auth_refused(pool));
}
END_TEST

/* No credentials at all: Redis wants some (NOAUTH), which the pool reports as a
 * refusal of the default user, as for a wrong password. */
START_TEST(test_redis_pool_without_credentials_is_refused_and_named)
{
    err_t err = ERR_INIT;
    const char *url = getenv("REDIS_URL");
    char bare[256];
    const char *at = strchr(url, '@');
    snprintf(bare, sizeof(bare), "redis://%s", at != NULL ? at + 1 : url + strlen("redis://"));
    redis_pool_t *p = redis_pool_new(bare, NULL, 1, 2000, &err);
    ck_assert_msg(p != NULL, "%s", err.msg);
    const char *ping[] = {"PING"};
    ck_assert_ptr_null(redis_pool_command(p, 1, ping, NULL, &err));
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.msg, "refused the credentials of user default: NOAUTH") != NULL, "%s",
                  err.msg);
    ck_assert(redis_pool_auth_refused(p));
    redis_pool_free(p);
}
END_TEST

/* expect_noperm: the gateway's user runs argv and Redis's ACL refuses it (NOPERM;
 * from within a script: "can't access" a key). */
static void expect_noperm(int argc, const char **argv)
{
    err_t err = ERR_INIT;
    redisReply *r = redis_pool_command(pool, argc, argv, NULL, &err);
    ck_assert_msg(r == NULL, "%s %s was allowed", argv[0], argc > 1 ? argv[1] : "");
    ck_assert_int_eq(err.code, ERR_INTERNAL);
    ck_assert_msg(strstr(err.msg, "NOPERM") != NULL || strstr(err.msg, "can't access") != NULL,
                  "%s: %s", argv[0], err.msg);
}

/* Least privilege: the gateway's user runs the gateway's commands on keys under
 * gw: and nothing else, neither directly nor from a script. */
START_TEST(test_redis_gateway_user_is_confined_to_its_commands_and_keys)
{
    expect_noperm(3, (const char *[]){"CONFIG", "GET", "appendonly"});
    expect_noperm(1, (const char *[]){"FLUSHALL"});
    expect_noperm(1, (const char *[]){"FLUSHDB"});
    expect_noperm(2, (const char *[]){"KEYS", "*"});
    expect_noperm(2, (const char *[]){"SCAN", "0"});
    expect_noperm(2, (const char *[]){"SCRIPT", "FLUSH"});
    expect_noperm(2, (const char *[]){"ACL", "LIST"});
    expect_noperm(3, (const char *[]){"SET", "other:key", "1"});
    expect_noperm(2, (const char *[]){"GET", "sess:x"});
    expect_noperm(5, (const char *[]){"EVAL", "return redis.call('SET', KEYS[1], '1')", "1",
                                      "other:key", "x"});
    expect_noperm(4,
                  (const char *[]){"EVAL", "return redis.call('GET', ARGV[1])", "0", "other:key"});
    /* Its own keys it may use. */
    char key[80];
    snprintf(key, sizeof(key), "%sprobe", prefix);
    err_t err = ERR_INIT;
    redisReply *r = redis_pool_command(pool, 3, (const char *[]){"SET", key, "1"}, NULL, &err);
    ck_assert_msg(r != NULL, "%s", err.msg);
    freeReplyObject(r);
}
END_TEST

/* Scripts travel by SHA-1; a server that forgot them (restart, SCRIPT FLUSH)
 * answers NOSCRIPT and gets the text once. */
static long long redis_evalsha_calls(void)
{
    const char *argv[] = {"INFO", "commandstats"};
    err_t err = ERR_INIT;
    redisReply *r = redis_pool_command(admin, 2, argv, NULL, &err);
    ck_assert_ptr_nonnull(r);
    const char *at = strstr(r->str, "cmdstat_evalsha:calls=");
    long long n = at != NULL ? atoll(at + strlen("cmdstat_evalsha:calls=")) : 0;
    freeReplyObject(r);
    return n;
}

START_TEST(test_redis_script_runs_by_sha_and_survives_a_flush)
{
    static redis_script_t echo = REDIS_SCRIPT("return {KEYS[1], ARGV[1]}");
    err_t err = ERR_INIT;
    char k[80];
    snprintf(k, sizeof(k), "%sk", prefix);
    const char *argv[] = {"1", k, "v"};
    for (int round = 0; round < 2; round++) {
        long long before = redis_evalsha_calls();
        for (int i = 0; i < 3; i++) {
            redisReply *r = redis_pool_eval(pool, &echo, 3, argv, &err);
            ck_assert_ptr_nonnull(r);
            ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
            ck_assert_int_eq(r->elements, 2);
            ck_assert_str_eq(r->element[0]->str, k);
            ck_assert_str_eq(r->element[1]->str, "v");
            freeReplyObject(r);
        }
        ck_assert_int_ge(redis_evalsha_calls() - before, 3);
        const char *flush[] = {"SCRIPT", "FLUSH"};
        redisReply *f = redis_pool_command(admin, 2, flush, NULL, &err);
        ck_assert_ptr_nonnull(f);
        freeReplyObject(f);
    }
    const char *bad[] = {"1"};
    static redis_script_t broken = REDIS_SCRIPT("return redis.call('NOSUCHCOMMAND')");
    ck_assert_ptr_null(redis_pool_eval(pool, &broken, 1, bad, &err));
    ck_assert_int_eq(err.code, ERR_INTERNAL);
}
END_TEST

/* ---- Sentinels (REDIS_SENTINELS, docs/ha-redis.md) ---- */

START_TEST(test_redis_sentinels_parse_lists)
{
    redis_addr_t a[REDIS_SENTINELS_MAX];
    err_t err = ERR_INIT;
    ck_assert_int_eq(redis_sentinels_parse("127.0.0.1:26379", a, REDIS_SENTINELS_MAX, &err), 1);
    ck_assert_str_eq(a[0].host, "127.0.0.1");
    ck_assert_int_eq(a[0].port, 26379);
    ck_assert_int_eq(
        redis_sentinels_parse("s1.example:1,[::1]:2,10.0.0.3:65535", a, REDIS_SENTINELS_MAX, &err),
        3);
    ck_assert_str_eq(a[0].host, "s1.example");
    ck_assert_str_eq(a[1].host, "::1");
    ck_assert_int_eq(a[1].port, 2);
    ck_assert_int_eq(a[2].port, 65535);
    const char *bad[] = {"",           "host",       "host:",      ":1",    "host:0",
                         "host:65536", "host:12x",   "a:1,",       ",a:1",  "a:1,,b:2",
                         "::1:26379",  "[::1]26379", "[::1:2",     "a b:1", "user@host:1",
                         "host:1/0",   "[]:1",       "host:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = (err_t)ERR_INIT;
        ck_assert_msg(redis_sentinels_parse(bad[i], a, REDIS_SENTINELS_MAX, &err) == ERR_INVALID,
                      "accepted \"%s\"", bad[i]);
        ck_assert_msg(strstr(err.msg, "REDIS_SENTINELS") != NULL, "%s", err.msg);
    }
    ck_assert_int_eq(redis_sentinels_parse("a:1,b:2,c:3", a, 2, &err), ERR_INVALID);
}
END_TEST

START_TEST(test_redis_pool_sentinel_settings_are_checked)
{
    err_t err = ERR_INIT;
    redis_pool_t *p = redis_pool_new("redis://127.0.0.1:1", NULL, 1, 300, &err);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(redis_pool_use_sentinels(p, "127.0.0.1", "shop", 0, &err), ERR_INVALID);
    ck_assert_int_eq(redis_pool_use_sentinels(p, "127.0.0.1:1", "", 0, &err), ERR_INVALID);
    ck_assert_int_eq(redis_pool_use_sentinels(p, "127.0.0.1:1", "a b", 0, &err), ERR_INVALID);
    /* No Sentinel answers: UNAVAILABLE, saying so (not the URL's server). */
    ck_assert_int_eq(redis_pool_use_sentinels(p, "127.0.0.1:1,127.0.0.1:2", "shop", 0, &err), 0);
    const char *argv[] = {"PING"};
    ck_assert_ptr_null(redis_pool_command(p, 1, argv, NULL, &err));
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.msg, "no redis sentinel answered") != NULL, "%s", err.msg);
    redis_pool_free(p);
}
END_TEST

/* A master, its replica and one Sentinel (quorum 1) of our own, without passwords,
 * on free ports under a temporary directory: real servers, killed by the test. */
typedef struct ha_redis {
    char dir[64];
    int port[3]; /* master, replica, Sentinel */
    pid_t pid[3];
} ha_redis_t;

static pid_t spawn_redis(const char *conf, bool sentinel)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test, also when it fails */
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        execlp("redis-server", "redis-server", conf, sentinel ? "--sentinel" : NULL, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* A reply of one command at port (no login), or NULL when it cannot be reached. */
static redisReply *direct(int port, const char *fmt, ...)
{
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, (struct timeval){1, 0});
    if (c == NULL || c->err != 0) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, (struct timeval){1, 0});
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* ROLE's first word at port ("master", "slave"), into out; "" when unreachable. */
static void role_of(int port, char out[16])
{
    redisReply *r = direct(port, "ROLE");
    snprintf(out, 16, "%s",
             r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->str
                                                                          : "");
    if (r != NULL)
        freeReplyObject(r);
}

static void ha_redis_start(ha_redis_t *h)
{
    snprintf(h->dir, sizeof(h->dir), "/tmp/redis-ha-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(h->dir));
    for (int i = 0; i < 3; i++)
        h->port[i] = check_free_port();
    for (int i = 0; i < 3; i++) {
        char conf[128];
        snprintf(conf, sizeof(conf), "%s/%d.conf", h->dir, i);
        FILE *f = fopen(conf, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f,
                "bind 127.0.0.1\nport %d\ndir %s\ndbfilename %d.rdb\nsave \"\"\n"
                "repl-diskless-sync-delay 0\n",
                h->port[i], h->dir, i);
        if (i == 1)
            fprintf(f, "replicaof 127.0.0.1 %d\n", h->port[0]);
        if (i == 2)
            fprintf(f,
                    "sentinel monitor t 127.0.0.1 %d 1\nsentinel down-after-milliseconds t 1000\n"
                    "sentinel failover-timeout t 5000\n",
                    h->port[0]);
        fclose(f);
        h->pid[i] = spawn_redis(conf, i == 2);
    }
    /* Ready when the replica is online at the master and the Sentinel knows it. */
    for (int i = 0; i < 200; i++) {
        redisReply *r = direct(h->port[2], "SENTINEL REPLICAS t");
        bool known = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
        if (r != NULL)
            freeReplyObject(r);
        /* The master's view: a replica is online (counted by WAIT) once it acknowledged. */
        r = direct(h->port[0], "INFO replication");
        bool synced =
            r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, "state=online") != NULL;
        if (r != NULL)
            freeReplyObject(r);
        if (known && synced)
            return;
        clock_sleep_ms(100);
    }
    ck_abort_msg("our master, replica and Sentinel did not come up");
}

static void ha_redis_stop(ha_redis_t *h)
{
    for (int i = 0; i < 3; i++) {
        if (h->pid[i] > 0) {
            kill(h->pid[i], SIGKILL);
            waitpid(h->pid[i], NULL, 0);
        }
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* The pool finds the master through the Sentinel; a durable write is on the replica
 * when answered (WAIT); after SIGKILL of the master, commands fail UNAVAILABLE until
 * the Sentinel promotes the replica, then succeed there, with the write still in it. */
START_TEST(test_redis_pool_follows_a_failover)
{
    ha_redis_t h = {0};
    ha_redis_start(&h);
    err_t err = ERR_INIT;
    redis_pool_t *p = redis_pool_new("redis://127.0.0.1:1", NULL, 2, 2000, &err);
    ck_assert_ptr_nonnull(p);
    char list[64];
    snprintf(list, sizeof(list), "127.0.0.1:1,127.0.0.1:%d", h.port[2]); /* one dead first */
    /* The wait must end before the command's timeout; a generous one: a loaded machine
     * delays the replica's acknowledgement by hundreds of ms (measured on 2 vCPUs). */
    ck_assert_int_eq(redis_pool_use_sentinels(p, list, "t", 2000, &err), ERR_INVALID);
    ck_assert_int_eq(redis_pool_use_sentinels(p, list, "t", 1500, &err), 0);
    const char *set[] = {"SET", "gw:ha:k", "v"};
    redisReply *r = redis_pool_command_durable(p, 3, set, NULL, &err);
    ck_assert_msg(r != NULL, "%s", err.msg);
    freeReplyObject(r);
    r = direct(h.port[1], "GET gw:ha:k"); /* on the replica when answered */
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);

    kill(h.pid[0], SIGKILL);
    waitpid(h.pid[0], NULL, 0);
    h.pid[0] = 0;
    int64_t t0 = clock_mono_us();
    int failed = 0;
    const char *get[] = {"GET", "gw:ha:k"};
    for (r = NULL; r == NULL && clock_mono_us() - t0 < 20000000;) {
        r = redis_pool_command(p, 2, get, NULL, &err);
        if (r == NULL) {
            ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
            failed++;
            clock_sleep_ms(50);
        }
    }
    ck_assert_msg(r != NULL, "no master within 20 s: %s", err.msg);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, "v");
    freeReplyObject(r);
    ck_assert_int_gt(failed, 0); /* it did fail over, not answer from the dead one */
    char role[16];
    role_of(h.port[1], role);
    ck_assert_str_eq(role, "master");
    r = redis_pool_command(p, 3, set, NULL, &err); /* and writes there */
    ck_assert_msg(r != NULL, "%s", err.msg);
    freeReplyObject(r);
    redis_pool_free(p);
    ha_redis_stop(&h);
}
END_TEST

/* A server that says it is a replica is not taken for the master (ROLE), and READONLY
 * makes the pool ask the Sentinel again rather than fail every later call. */
START_TEST(test_redis_pool_refuses_a_replica_named_master)
{
    ha_redis_t h = {0};
    ha_redis_start(&h);
    err_t err = ERR_INIT;
    redis_pool_t *p = redis_pool_new("redis://127.0.0.1:1", NULL, 1, 500, &err);
    ck_assert_ptr_nonnull(p);
    char list[32];
    snprintf(list, sizeof(list), "127.0.0.1:%d", h.port[2]);
    ck_assert_int_eq(redis_pool_use_sentinels(p, list, "t", 0, &err), 0);
    const char *set[] = {"SET", "gw:ha:k", "v"};
    redisReply *r = redis_pool_command(p, 3, set, NULL, &err);
    ck_assert_msg(r != NULL, "%s", err.msg);
    freeReplyObject(r);
    /* The master becomes a replica of the replica behind the Sentinel's back: the
     * pool's open connection gets READONLY, its next one finds ROLE slave. */
    r = direct(h.port[0], "REPLICAOF 127.0.0.1 %d", h.port[1]);
    freeReplyObject(r);
    r = direct(h.port[1], "REPLICAOF NO ONE");
    freeReplyObject(r);
    r = redis_pool_command(p, 3, set, NULL, &err);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.msg, "READONLY") != NULL || strstr(err.msg, "not the master"), "%s",
                  err.msg);
    redis_pool_free(p);
    ha_redis_stop(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("session");
    TCase *tc = check_case(s, "session", 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_session_create_check_and_logout);
    tcase_add_test(tc, test_session_refresh_rotates_the_token);
    tcase_add_test(tc, test_session_reused_refresh_token_revokes_the_session);
    tcase_add_test(tc, test_session_rejects_unknown_and_malformed_tokens);
    tcase_add_test(tc, test_session_expires_absolutely_and_refresh_does_not_extend_it);
    tcase_add_test(tc, test_session_stores_refresh_tokens_only_hashed);
    tcase_add_test(tc, test_session_concurrent_refreshes_let_one_win);
    tc = check_case(s, "ratelimit", 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_ratelimit_refuses_the_eleventh_hit_with_retry_after);
    tcase_add_test(tc, test_ratelimit_window_resets);
    tcase_add_test(tc, test_auth_verdict_follows_the_session_the_budget_and_the_role);
    tcase_add_test(tc, test_ratelimit_guarded_counts_only_while_the_session_lives);
    tcase_add_test(tc, test_redis_pool_reports_unreachable_and_bad_urls);
    tcase_add_test(tc, test_redis_script_runs_by_sha_and_survives_a_flush);
    tcase_add_test(tc, test_redis_pool_refuses_a_user_without_a_password);
    tcase_add_test(tc, test_redis_pool_wrong_password_is_refused_and_named);
    tcase_add_test(tc, test_redis_pool_without_credentials_is_refused_and_named);
    tcase_add_test(tc, test_redis_gateway_user_is_confined_to_its_commands_and_keys);
    /* Sentinels: the settings, and servers of the test's own (no stack needed). */
    tc = check_case(s, "sentinel", 60);
    tcase_add_test(tc, test_redis_sentinels_parse_lists);
    tcase_add_test(tc, test_redis_pool_sentinel_settings_are_checked);
    tcase_add_test(tc, test_redis_pool_follows_a_failover);
    tcase_add_test(tc, test_redis_pool_refuses_a_replica_named_master);
    return check_run(s, CK_FORK_GETENV);
}
