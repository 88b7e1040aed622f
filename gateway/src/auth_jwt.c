/*
 * auth_jwt: issuing and verifying access tokens with libjwt 1.10, which checks
 * nothing but a signature (auth_jwt.h says what is checked here instead).
 */
#include "auth_jwt.h"

#include <errno.h>
#include <stdatomic.h>
#include <jansson.h>
#include <jwt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/uuid.h"

#define JWT_SECRET_MIN 32

struct jwt_keys {
    jwt_alg_t alg;
    char *sign_key; /* the secret, or the private PEM */
    size_t sign_len;
    char *verify_key; /* the secret, or the public PEM */
    size_t verify_len;
    char *issuer;
    char *audience;
    int64_t ttl_s;
    uint64_t id; /* unique per process: tells the verified-token cache apart by config */
};

/* Tokens this thread verified lately. A client sends the same access token for its
 * whole lifetime, and decoding and checking it (base64, HMAC or ECDSA, JSON) is the
 * largest CPU cost of an authenticated request in the gateway. An entry keeps the
 * exact token bytes and the claims they carried; a hit redoes only the time checks.
 * Revocation is unaffected: the session is looked up in Redis on every request. */
#define JWT_CACHE_SLOTS     8
#define JWT_CACHE_TOKEN_MAX 1024
typedef struct jwt_cache_entry {
    uint64_t keys_id; /* 0: empty */
    size_t len;
    char token[JWT_CACHE_TOKEN_MAX];
    jwt_claims_t claims;
} jwt_cache_entry_t;

static _Thread_local jwt_cache_entry_t jwt_cache[JWT_CACHE_SLOTS];
static atomic_uint_fast64_t jwt_keys_ids;

void jwt_keys_free(jwt_keys_t *k)
{
    if (k == NULL)
        return;
    if (k->sign_key != NULL)
        memset(k->sign_key, 0, k->sign_len);
    free(k->sign_key);
    if (k->verify_key != NULL && k->alg == JWT_ALG_HS256)
        memset(k->verify_key, 0, k->verify_len);
    free(k->verify_key);
    free(k->issuer);
    free(k->audience);
    free(k);
}

int64_t jwt_keys_ttl_s(const jwt_keys_t *k)
{
    return k->ttl_s;
}

static char *jwt_xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static int jwt_keys_check_opts(const jwt_keys_opts_t *o, jwt_alg_t *alg, err_t *err)
{
    if (o->alg == NULL)
        return err_set(err, ERR_INVALID, "JWT_ALG: must be HS256 or ES256");
    if (strcmp(o->alg, JWT_ALG_NAME_HS256) == 0) {
        *alg = JWT_ALG_HS256;
        if (o->secret == NULL || strlen(o->secret) < JWT_SECRET_MIN)
            return err_set(err, ERR_INVALID,
                           "JWT_SECRET: HS256 needs a secret of at least %d bytes", JWT_SECRET_MIN);
    } else if (strcmp(o->alg, JWT_ALG_NAME_ES256) == 0) {
        *alg = JWT_ALG_ES256;
        if (o->private_pem == NULL || o->public_pem == NULL ||
            strstr(o->private_pem, "PRIVATE KEY-----") == NULL ||
            strstr(o->public_pem, "PUBLIC KEY-----") == NULL)
            return err_set(err, ERR_INVALID,
                           "JWT_PRIVATE_KEY_FILE/JWT_PUBLIC_KEY_FILE: ES256 needs a PEM private "
                           "key and a PEM public key");
    } else {
        return err_set(err, ERR_INVALID, "JWT_ALG: must be HS256 or ES256, got \"%s\"", o->alg);
    }
    if (o->issuer == NULL || o->issuer[0] == '\0')
        return err_set(err, ERR_INVALID, "JWT_ISSUER: must not be empty");
    if (o->audience == NULL || o->audience[0] == '\0')
        return err_set(err, ERR_INVALID, "JWT_AUDIENCE: must not be empty");
    if (o->ttl_s < 1 || o->ttl_s > JWT_MAX_TTL_S)
        return err_set(err, ERR_INVALID, "ACCESS_TOKEN_TTL: must be 1s..%ds", JWT_MAX_TTL_S);
    return 0;
}

jwt_keys_t *jwt_keys_new(const jwt_keys_opts_t *opts, err_t *err)
{
    jwt_alg_t alg = JWT_ALG_NONE;
    if (jwt_keys_check_opts(opts, &alg, err) < 0)
        return NULL;
    jwt_keys_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        abort();
    k->alg = alg;
    k->id = atomic_fetch_add(&jwt_keys_ids, 1) + 1;
    const char *sign = alg == JWT_ALG_HS256 ? opts->secret : opts->private_pem;
    const char *verify = alg == JWT_ALG_HS256 ? opts->secret : opts->public_pem;
    k->sign_key = jwt_xstrdup(sign);
    k->sign_len = strlen(sign);
    k->verify_key = jwt_xstrdup(verify);
    k->verify_len = strlen(verify);
    k->issuer = jwt_xstrdup(opts->issuer);
    k->audience = jwt_xstrdup(opts->audience);
    k->ttl_s = opts->ttl_s;

    /* A probe proves the keys load and belong together before we serve. */
    err_t probe_err = ERR_INIT;
    char sid[UUID_STR_LEN];
    uuid_new(sid);
    jwt_claims_t claims;
    char *probe = jwt_token_issue(k, sid, "customer", sid, 1700000000, &probe_err);
    if (probe == NULL || jwt_token_verify(k, probe, 1700000000, &claims, &probe_err) < 0) {
        err_set(err, ERR_INVALID, "JWT keys unusable: %s", probe_err.msg);
        free(probe);
        jwt_keys_free(k);
        return NULL;
    }
    free(probe);
    return k;
}

char *jwt_token_issue(const jwt_keys_t *k, const char *sub, const char *role, const char *sid,
                      int64_t now_s, err_t *err)
{
    jwt_t *jwt = NULL;
    char *out = NULL;
    char jti[UUID_STR_LEN];
    uuid_new(jti);
    if (jwt_new(&jwt) != 0)
        abort();
    int rc = jwt_add_grant(jwt, "sub", sub) | jwt_add_grant(jwt, "role", role) |
             jwt_add_grant(jwt, "sid", sid) | jwt_add_grant(jwt, "jti", jti) |
             jwt_add_grant(jwt, "iss", k->issuer) | jwt_add_grant(jwt, "aud", k->audience) |
             jwt_add_grant_int(jwt, "iat", (long)now_s) |
             jwt_add_grant_int(jwt, "nbf", (long)now_s) |
             jwt_add_grant_int(jwt, "exp", (long)(now_s + k->ttl_s)) |
             jwt_set_alg(jwt, k->alg, (const unsigned char *)k->sign_key, (int)k->sign_len);
    if (rc != 0) {
        err_set(err, ERR_INTERNAL, "cannot build the access token");
        goto out;
    }
    out = jwt_encode_str(jwt);
    if (out == NULL)
        err_set(err, ERR_INTERNAL, "cannot sign the access token: %s", strerror(errno));
out:
    jwt_free(jwt);
    return out;
}

/* A claim that must be a non-empty string of printable ASCII that fits. */
static int jwt_claim_str(json_t *claims, const char *name, char *out, err_t *err)
{
    json_t *v = json_object_get(claims, name);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n >= JWT_CLAIM_MAX)
        return err_set(err, ERR_UNAUTHENTICATED, "token claim %s missing or malformed", name);
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e)
            return err_set(err, ERR_UNAUTHENTICATED, "token claim %s malformed", name);
    }
    memcpy(out, s, n + 1);
    return 0;
}

static int jwt_claim_int(json_t *claims, const char *name, int64_t *out, err_t *err)
{
    json_t *v = json_object_get(claims, name);
    if (!json_is_integer(v))
        return err_set(err, ERR_UNAUTHENTICATED, "token claim %s missing or not an integer", name);
    *out = json_integer_value(v);
    return 0;
}

/* aud may be one string or an array of them (RFC 7519 §4.1.3). */
static bool jwt_aud_matches(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return true;
    }
    return false;
}

static int jwt_check_times(const jwt_claims_t *c, int64_t now_s, err_t *err)
{
    if (now_s >= c->exp + JWT_LEEWAY_S)
        return err_set(err, ERR_UNAUTHENTICATED, "token expired");
    if (now_s + JWT_LEEWAY_S < c->nbf)
        return err_set(err, ERR_UNAUTHENTICATED, "token not valid yet");
    if (now_s + JWT_LEEWAY_S < c->iat)
        return err_set(err, ERR_UNAUTHENTICATED, "token issued in the future");
    return 0;
}

static int jwt_check_claims(const jwt_keys_t *k, json_t *c, int64_t now_s, jwt_claims_t *out,
                            err_t *err)
{
    json_t *iss = json_object_get(c, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), k->issuer) != 0)
        return err_set(err, ERR_UNAUTHENTICATED, "token issuer not accepted");
    if (!jwt_aud_matches(json_object_get(c, "aud"), k->audience))
        return err_set(err, ERR_UNAUTHENTICATED, "token audience not accepted");
    if (jwt_claim_int(c, "exp", &out->exp, err) < 0 ||
        jwt_claim_int(c, "nbf", &out->nbf, err) < 0 || jwt_claim_int(c, "iat", &out->iat, err) < 0)
        return err->code;
    if (jwt_check_times(out, now_s, err) != 0)
        return err->code;
    if (jwt_claim_str(c, "sub", out->sub, err) < 0 ||
        jwt_claim_str(c, "role", out->role, err) < 0 ||
        jwt_claim_str(c, "sid", out->sid, err) < 0 || jwt_claim_str(c, "jti", out->jti, err) < 0)
        return err->code;
    if (strcmp(out->role, "customer") != 0 && strcmp(out->role, "admin") != 0)
        return err_set(err, ERR_UNAUTHENTICATED, "token role not accepted");
    return 0;
}

/* The slot of a token: its last bytes are signature, as good as random. */
static jwt_cache_entry_t *jwt_cache_slot(const char *token, size_t n)
{
    unsigned h = (unsigned char)token[n - 1] * 31u + (unsigned char)token[n / 2] + (unsigned)n;
    return &jwt_cache[h % JWT_CACHE_SLOTS];
}

static int jwt_token_decode(const jwt_keys_t *k, const char *token, int64_t now_s,
                            jwt_claims_t *out, err_t *err)
{
    jwt_t *jwt = NULL;
    json_t *claims = NULL;
    int rc;
    /* The key is always given: with NULL libjwt 1.10 accepts alg "none". */
    if (jwt_decode(&jwt, token, (const unsigned char *)k->verify_key, (int)k->verify_len) != 0) {
        rc = err_set(err, ERR_UNAUTHENTICATED, "token signature or format invalid");
        goto out;
    }
    /* libjwt verified with the header's algorithm: anything but ours is forged or
     * confused (HS256 keyed with our public PEM verifies as an HMAC). */
    if (jwt_get_alg(jwt) != k->alg) {
        rc = err_set(err, ERR_UNAUTHENTICATED, "token algorithm %s not accepted",
                     jwt_alg_str(jwt_get_alg(jwt)));
        goto out;
    }
    char *text = jwt_get_grants_json(jwt, NULL);
    claims = text != NULL ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(text);
    if (!json_is_object(claims)) {
        rc = err_set(err, ERR_UNAUTHENTICATED, "token claims unreadable");
        goto out;
    }
    rc = jwt_check_claims(k, claims, now_s, out, err);
out:
    json_decref(claims);
    jwt_free(jwt);
    return rc;
}

int jwt_token_verify(const jwt_keys_t *k, const char *token, int64_t now_s, jwt_claims_t *out,
                     err_t *err)
{
    memset(out, 0, sizeof(*out));
    size_t n = token != NULL ? strnlen(token, JWT_TOKEN_MAX + 1) : 0;
    if (n == 0 || n > JWT_TOKEN_MAX)
        return err_set(err, ERR_UNAUTHENTICATED, "token missing or too long");
    jwt_cache_entry_t *e = jwt_cache_slot(token, n);
    if (e->keys_id == k->id && e->len == n && memcmp(e->token, token, n) == 0) {
        if (jwt_check_times(&e->claims, now_s, err) != 0)
            return err->code;
        *out = e->claims;
        return 0;
    }
    int rc = jwt_token_decode(k, token, now_s, out, err);
    if (rc == 0 && n < JWT_CACHE_TOKEN_MAX) {
        e->keys_id = k->id;
        e->len = n;
        memcpy(e->token, token, n);
        e->claims = *out;
    }
    return rc;
}
