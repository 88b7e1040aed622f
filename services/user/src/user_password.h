/*
 * user_password: password hashing with argon2id (libargon2), as OWASP recommends and
 * docs/architecture.md §3 requires: m ≥ 19 MiB, t ≥ 2, p = 1, a fresh 16-byte salt from
 * getrandom(2) per hash, a 32-byte tag, stored as the PHC encoded string
 * "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>" (parameters travel with the hash,
 * so raising them later leaves old hashes verifiable).
 *
 * Each hash or verification costs tens of milliseconds and `memory_kib` of memory,
 * so at most `concurrency` run at once; the others wait, up to their caller's
 * deadline. An unknown account is verified against a dummy hash, computed once by
 * user_password_new with the same parameters, so that it costs what a wrong password
 * costs and accounts cannot be found by timing.
 *
 * Passwords and hashes are never logged here, nor copied anywhere but into
 * libargon2 and the caller's output buffer.
 */
#ifndef USER_PASSWORD_H
#define USER_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Room for an encoded hash with any parameters user_password_new accepts. */
#define USER_PASSWORD_HASH_MAX 192

/* The smallest parameters accepted (OWASP's argon2id minimum). */
#define USER_PASSWORD_MIN_MEMORY_KIB 19456
#define USER_PASSWORD_MIN_ITERATIONS 2

typedef struct user_password user_password_t;

typedef struct user_password_opts {
    uint32_t memory_kib; /* ≥ USER_PASSWORD_MIN_MEMORY_KIB, ≤ 4 GiB */
    uint32_t iterations; /* ≥ USER_PASSWORD_MIN_ITERATIONS */
    int concurrency;     /* hashes at once, ≥ 1 */
} user_password_opts_t;

/* user_password_new: a hasher with these parameters (p is always 1). Computes the
 * dummy hash, so it takes one hash's time. Owned; free with user_password_free.
 * NULL with ERR_INVALID for parameters below the minimums, or ERR_INTERNAL when
 * the dummy hash cannot be computed (no randomness, no memory). */
user_password_t *user_password_new(const user_password_opts_t *o, err_t *err);

/* user_password_free: NULL is accepted. No call may be running. */
void user_password_free(user_password_t *pw);

/* user_password_hash: the encoded argon2id hash of `password` (NUL-terminated, any
 * length the caller accepted) into out[USER_PASSWORD_HASH_MAX]. Waits for a free
 * slot at most timeout_ms (a day or more: no limit). 0, ERR_TIMEOUT (no slot in time), or
 * ERR_INTERNAL (randomness or libargon2 failed; the message says which, never the
 * password). Thread-safe. */
int user_password_hash(user_password_t *pw, const char *password, int64_t timeout_ms,
                       char out[USER_PASSWORD_HASH_MAX], err_t *err);

/* user_password_verify: checks `password` against `encoded`, or against the dummy
 * hash when encoded is NULL (an unknown account: always a mismatch, at the same
 * cost). 0 on a match; ERR_UNAUTHENTICATED on a mismatch (message "invalid email or
 * password", the same in every case); ERR_TIMEOUT as for hashing; ERR_INTERNAL for
 * an encoded string libargon2 cannot read. Thread-safe. */
int user_password_verify(user_password_t *pw, const char *encoded, const char *password,
                         int64_t timeout_ms, err_t *err);

/* The message of every failed verification, so callers never vary it. */
#define USER_PASSWORD_MISMATCH "invalid email or password"

#endif
