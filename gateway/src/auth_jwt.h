/*
 * auth_jwt: access tokens (docs/architecture.md §5, docs/libraries.md "libjwt 1.10").
 *
 * A token is a JWT signed with HS256 (a shared secret) or ES256 (a P-256 key
 * pair, PEM), chosen by configuration. Claims: sub (user id), role ("customer" |
 * "admin"), sid (session id), jti (token id), iat, nbf, exp (seconds), iss, aud.
 *
 * libjwt 1.10 checks nothing but the signature, and that with whatever algorithm
 * the token's own header names. So verification here: bounds the token's size;
 * always hands libjwt the key; requires the header's alg to be exactly the
 * configured one (which rejects "none", any other algorithm, and an HS256 token
 * "signed" with the ES256 public key as its secret); then checks iss and aud
 * against the configuration, exp and nbf (and iat) against the clock with a small
 * leeway, and that sub, role, sid and jti are present and well-formed. Whether
 * the session still exists is the caller's check (session.h).
 */
#ifndef GATEWAY_AUTH_JWT_H
#define GATEWAY_AUTH_JWT_H

#include <stdint.h>

#include "common/err.h"

#define JWT_TOKEN_MAX      4096 /* longer Authorization values are rejected unread */
#define JWT_MAX_TTL_S      900  /* access tokens live at most 15 minutes */
#define JWT_LEEWAY_S       5    /* clock skew tolerated on exp, nbf and iat */
#define JWT_CLAIM_MAX      64
#define JWT_ALG_NAME_HS256 "HS256"
#define JWT_ALG_NAME_ES256 "ES256"

typedef struct jwt_keys jwt_keys_t;

typedef struct jwt_keys_opts {
    const char *alg;         /* "HS256" or "ES256" */
    const char *secret;      /* HS256: at least 32 bytes */
    const char *private_pem; /* ES256: the signing key, PEM text */
    const char *public_pem;  /* ES256: the verification key, PEM text */
    const char *issuer;      /* iss, required */
    const char *audience;    /* aud, required */
    int64_t ttl_s;           /* lifetime of issued tokens, 1..JWT_MAX_TTL_S */
} jwt_keys_opts_t;

typedef struct jwt_claims {
    char sub[JWT_CLAIM_MAX];
    char role[JWT_CLAIM_MAX];
    char sid[JWT_CLAIM_MAX];
    char jti[JWT_CLAIM_MAX];
    int64_t iat, nbf, exp;
} jwt_claims_t;

/* jwt_keys_new: the keys and rules for issuing and verifying. Strings are
 * copied. Checks the options and, for ES256, that the two PEMs are a matching
 * P-256 pair (by signing and verifying a probe token). Returns an owned object
 * (jwt_keys_free), or NULL with err ERR_INVALID naming the problem (never a
 * secret). Thread-safe to use once built. */
jwt_keys_t *jwt_keys_new(const jwt_keys_opts_t *opts, err_t *err);

/* jwt_keys_free: NULL is accepted. */
void jwt_keys_free(jwt_keys_t *k);

/* jwt_keys_ttl_s: the configured lifetime of issued tokens. */
int64_t jwt_keys_ttl_s(const jwt_keys_t *k);

/* jwt_token_issue: a signed token for sub/role/sid valid from now_s for the
 * configured TTL, with a fresh jti. Returns a malloc'd string (free), or NULL with
 * err ERR_INTERNAL. Thread-safe. */
char *jwt_token_issue(const jwt_keys_t *k, const char *sub, const char *role, const char *sid,
                      int64_t now_s, err_t *err);

/* jwt_token_verify: 0 and *out when `token` passes every check above at now_s;
 * otherwise ERR_UNAUTHENTICATED with err->msg saying which check failed (for the
 * log; clients get one generic message). Thread-safe. */
int jwt_token_verify(const jwt_keys_t *k, const char *token, int64_t now_s, jwt_claims_t *out,
                     err_t *err);

#endif
