/*
 * redis_pool: a fixed set of hiredis connections shared by the gateway's threads
 * (hiredis contexts are not thread-safe: docs/libraries.md "hiredis 0.14").
 *
 * A command borrows one connection for its round trip. Connections open lazily
 * and are dropped on any I/O error, so a Redis restart costs the calls in flight
 * and nothing else; a command that fails on a connection that was already open
 * (the server may have closed it while idle) is retried once on a fresh one.
 *
 * With Sentinels (redis_pool_use_sentinels, docs/ha-redis.md) the pool asks them for
 * the master's address instead of taking the URL's, checks that the server it reaches
 * says it is the master (ROLE), and when the master is lost (an I/O error, a timeout,
 * a READONLY or LOADING reply) drops the connection and asks again: one resolution at
 * a time, at most one every REDIS_RESOLVE_BACKOFF_MS. A command that failed because
 * the master was lost is retried once, against the master the Sentinels name then.
 * It also asks again once the last answer is REDIS_RESOLVE_MAX_AGE_MS old (a frozen
 * master that was replaced answers as a master again when it thaws).
 */
#ifndef GATEWAY_REDIS_POOL_H
#define GATEWAY_REDIS_POOL_H

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct redis_pool redis_pool_t;

/* redis_pool_new: up to `size` connections to `url`
 * (redis://[user][:password]@host:port[/db]), each command bounded by timeout_ms
 * (connect, send, receive; also the wait for a free connection). Every new
 * connection first sends AUTH [user] password (an ACL user: docs/trust.md), the
 * password being `password` when not NULL nor empty, else the URL's; a user without
 * a password is an error. Connects nothing yet. Returns an owned pool
 * (redis_pool_free), or NULL with err ERR_INVALID for a malformed URL. */
redis_pool_t *redis_pool_new(const char *url, const char *password, int size, int64_t timeout_ms,
                             err_t *err);

#define REDIS_SENTINELS_MAX      8
#define REDIS_RESOLVE_BACKOFF_MS 100
#define REDIS_RESOLVE_MAX_AGE_MS 1000

typedef struct redis_addr {
    char host[256];
    int port;
} redis_addr_t;

/* redis_sentinels_parse: a comma list of host:port (REDIS_SENTINELS; an IPv6 host in
 * brackets, [::1]:26379) into out[0..max-1]. Returns how many (≥ 1), or ERR_INVALID
 * with a message naming REDIS_SENTINELS and the bad entry. */
int redis_sentinels_parse(const char *list, redis_addr_t *out, int max, err_t *err);

/* redis_pool_use_sentinels: the pool follows the master `master_name` (REDIS_MASTER_NAME)
 * of the Sentinels in `list` (redis_sentinels_parse), logging in to them as the URL's
 * user; the URL's host and port are no longer used. replica_wait_ms > 0: a command
 * run durable waits up to that long for a replica to acknowledge it (WAIT 1); it must
 * be shorter than the pool's timeout. Call before the first command. 0, or ERR_INVALID. */
int redis_pool_use_sentinels(redis_pool_t *p, const char *list, const char *master_name,
                             int64_t replica_wait_ms, err_t *err);

/* redis_pool_auth_refused: Redis refused the pool's credentials on its last attempt
 * to connect, or answered NOAUTH to a pool given none (commands fail ERR_UNAVAILABLE
 * meanwhile, and the refusal is logged once: "redis refused the credentials").
 * Thread-safe. */
bool redis_pool_auth_refused(redis_pool_t *p);

/* redis_pool_free: closes every connection; none may be borrowed. NULL is accepted. */
void redis_pool_free(redis_pool_t *p);

/* redis_pool_command: runs one command given as argc strings (lens may be NULL
 * for NUL-terminated ones). Returns the reply, owned by the caller
 * (freeReplyObject); a reply of type REDIS_REPLY_ERROR is returned as NULL with
 * err ERR_INTERNAL and the server's message. NULL with ERR_UNAVAILABLE when
 * Redis cannot be reached in time. Thread-safe. */
redisReply *redis_pool_command(redis_pool_t *p, int argc, const char **argv, const size_t *lens,
                               err_t *err);

/* redis_pool_command_durable: redis_pool_command, then, with Sentinels and a replica
 * wait (redis_pool_use_sentinels), WAIT 1 on the same connection, so that a write
 * answered is on the replica too (a replica that does not answer in time is logged,
 * not an error: a lone master still takes writes). */
redisReply *redis_pool_command_durable(redis_pool_t *p, int argc, const char **argv,
                                       const size_t *lens, err_t *err);

/* A Lua script the pool runs by its SHA-1 (EVALSHA), so Redis neither receives
 * nor hashes the text on every call. Declare one per script, static:
 *   static redis_script_t my_script = REDIS_SCRIPT("return 1");  */
typedef struct redis_script {
    const char *text;
    bool durable;      /* waits for the replica (redis_pool_command_durable) */
    char sha1[41];     /* hex, set on first use */
    atomic_bool named; /* sha1 is set */
} redis_script_t;
#define REDIS_SCRIPT(lua)                                                                          \
    {                                                                                              \
        .text = (lua)                                                                              \
    }
/* A script whose writes must survive a failover once answered (a session's). */
#define REDIS_SCRIPT_DURABLE(lua)                                                                  \
    {                                                                                              \
        .text = (lua), .durable = true                                                             \
    }

#define REDIS_EVAL_ARGS_MAX 14

/* redis_pool_eval: runs script with argv = numkeys, keys..., args... (argc ≤
 * REDIS_EVAL_ARGS_MAX) as EVALSHA; when Redis does not know the script (NOSCRIPT:
 * the first call, or after a restart or SCRIPT FLUSH) it sends the text once with
 * EVAL on the same connection, which loads it. A durable script (REDIS_SCRIPT_DURABLE)
 * then waits for the replica as redis_pool_command_durable. Replies and errors as
 * redis_pool_command. Thread-safe. */
redisReply *redis_pool_eval(redis_pool_t *p, redis_script_t *script, int argc, const char **argv,
                            err_t *err);

#endif
