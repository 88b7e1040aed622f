/*
 * auth_jwt: issuing and verifying access tokens. Every rejection the gateway
 * promises is a crafted token here: alg none, another algorithm, HS256 keyed
 * with our ES256 public key, a wrong signature, expired, not yet valid, wrong
 * issuer or audience, each required claim missing.
 */
#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_jwt.h"
#include "check_util.h"

#define SECRET "0123456789abcdef0123456789abcdef-test-secret"
#define ISS    "shop-gateway"
#define AUD    "shop-api"
#define NOW    1900000000L

static jwt_keys_t *hs_keys(void)
{
    err_t err = ERR_INIT;
    jwt_keys_t *k = jwt_keys_new(
        &(jwt_keys_opts_t){
            .alg = "HS256", .secret = SECRET, .issuer = ISS, .audience = AUD, .ttl_s = 900},
        &err);
    ck_assert_msg(k != NULL, "%s", err.msg);
    return k;
}

/* A P-256 key pair as PEM text (malloc'd). */
static void ec_pair(char **priv, char **pub)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(pk);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    *priv = strndup(data, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pk);
    n = BIO_get_mem_data(b, &data);
    *pub = strndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(pk);
}

/* Claims as JSON text for a token issued at NOW, with `drop` left out and
 * `over` (a JSON object text, may be NULL) merged over them. */
static char *claims_json(const char *drop, const char *over)
{
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "sub",
                          "0190b8a4-7d3e-7000-8000-000000000001", "role", "customer", "sid",
                          "0190b8a4-7d3e-7000-8000-0000000000aa", "jti",
                          "0190b8a4-7d3e-7000-8000-0000000000bb", "iss", ISS, "aud", AUD, "iat",
                          (json_int_t)NOW, "nbf", (json_int_t)NOW, "exp", (json_int_t)(NOW + 900));
    if (drop != NULL)
        json_object_del(c, drop);
    if (over != NULL) {
        json_t *o = json_loads(over, 0, NULL);
        ck_assert_ptr_nonnull(o);
        json_object_update(c, o);
        json_decref(o);
    }
    char *s = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    return s;
}

/* A token signed by libjwt itself with any algorithm and key. */
static char *sign_with(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *jwt;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    ck_assert_int_eq(jwt_add_grants_json(jwt, claims), 0);
    ck_assert_int_eq(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *t = jwt_encode_str(jwt);
    ck_assert_ptr_nonnull(t);
    jwt_free(jwt);
    return t;
}

static char *b64url(const char *s)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s), o = 0;
    char *out = malloc(n * 4 / 3 + 4);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)u[i] << 16 | (i + 1 < n ? (unsigned)u[i + 1] << 8 : 0) |
                     (i + 2 < n ? u[i + 2] : 0);
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = tbl[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* Expects verification to fail with ERR_UNAUTHENTICATED and a message containing
 * `why`; frees the token. */
static void expect_rejected(const jwt_keys_t *k, char *token, const char *why)
{
    err_t err = ERR_INIT;
    jwt_claims_t c;
    int rc = jwt_token_verify(k, token, NOW + 10, &c, &err);
    ck_assert_msg(rc == ERR_UNAUTHENTICATED, "accepted a token that should fail with \"%s\"", why);
    ck_assert_msg(strstr(err.msg, why) != NULL, "\"%s\" does not say \"%s\"", err.msg, why);
    free(token);
}

START_TEST(test_jwt_issued_token_verifies_with_its_claims)
{
    jwt_keys_t *k = hs_keys();
    err_t err = ERR_INIT;
    char *t = jwt_token_issue(k, "user-1", "admin", "sid-1", NOW, &err);
    ck_assert_ptr_nonnull(t);
    jwt_claims_t c;
    ck_assert_int_eq(jwt_token_verify(k, t, NOW + 899, &c, &err), 0);
    ck_assert_str_eq(c.sub, "user-1");
    ck_assert_str_eq(c.role, "admin");
    ck_assert_str_eq(c.sid, "sid-1");
    ck_assert_int_eq(strlen(c.jti), 36);
    ck_assert_int_eq(c.exp, NOW + 900);
    ck_assert_int_eq(c.nbf, NOW);
    free(t);
    jwt_keys_free(k);
}
END_TEST

/* A token verified once is answered from this thread's cache: the same claims, the
 * time checks still applied, and never for another configuration. */
START_TEST(test_jwt_cached_token_keeps_every_check)
{
    jwt_keys_t *k = hs_keys();
    err_t err = ERR_INIT;
    char *t = jwt_token_issue(k, "user-2", "customer", "sid-2", NOW, &err);
    ck_assert_ptr_nonnull(t);
    jwt_claims_t c1, c2;
    ck_assert_int_eq(jwt_token_verify(k, t, NOW + 1, &c1, &err), 0);
    ck_assert_int_eq(jwt_token_verify(k, t, NOW + 2, &c2, &err), 0);
    ck_assert_mem_eq(&c1, &c2, sizeof(c1));
    /* Expiry is checked on a hit too. */
    err = (err_t)ERR_INIT;
    ck_assert_int_eq(jwt_token_verify(k, t, NOW + 900 + JWT_LEEWAY_S, &c2, &err),
                     ERR_UNAUTHENTICATED);
    ck_assert_msg(strstr(err.msg, "expired") != NULL, "%s", err.msg);
    /* Another secret (even at the same address once k is freed) verifies afresh. */
    jwt_keys_free(k);
    err = (err_t)ERR_INIT;
    jwt_keys_t *other = jwt_keys_new(&(jwt_keys_opts_t){.alg = "HS256",
                                                        .secret = SECRET "-rotated",
                                                        .issuer = ISS,
                                                        .audience = AUD,
                                                        .ttl_s = 900},
                                     &err);
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(jwt_token_verify(other, t, NOW + 3, &c2, &err), ERR_UNAUTHENTICATED);
    ck_assert_msg(strstr(err.msg, "signature") != NULL, "%s", err.msg);
    jwt_keys_free(other);
    free(t);
}
END_TEST

START_TEST(test_jwt_rejects_alg_none)
{
    jwt_keys_t *k = hs_keys();
    char *claims = claims_json(NULL, NULL);
    char *h = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}"), *p = b64url(claims);
    char *t = malloc(strlen(h) + strlen(p) + 3);
    sprintf(t, "%s.%s.", h, p);
    expect_rejected(k, t, "token");
    free(h);
    free(p);
    free(claims);
    jwt_keys_free(k);
}
END_TEST

START_TEST(test_jwt_rejects_another_hmac_algorithm)
{
    jwt_keys_t *k = hs_keys();
    char *claims = claims_json(NULL, NULL);
    expect_rejected(k, sign_with(JWT_ALG_HS512, SECRET, claims), "algorithm HS512 not accepted");
    free(claims);
    jwt_keys_free(k);
}
END_TEST

START_TEST(test_jwt_rejects_a_wrong_signature)
{
    jwt_keys_t *k = hs_keys();
    char *claims = claims_json(NULL, NULL);
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET "-but-another-one", claims), "signature");
    /* A valid token whose payload was changed after signing. */
    err_t err = ERR_INIT;
    char *good = jwt_token_issue(k, "user-1", "customer", "sid-1", NOW, &err);
    char *forged_claims = claims_json(NULL, "{\"role\":\"admin\"}");
    char *p = b64url(forged_claims);
    char *dot1 = strchr(good, '.'), *dot2 = strchr(dot1 + 1, '.');
    char *t = malloc(strlen(good) + strlen(p) + 2);
    sprintf(t, "%.*s.%s%s", (int)(dot1 - good), good, p, dot2);
    expect_rejected(k, t, "signature");
    free(p);
    free(forged_claims);
    free(good);
    free(claims);
    jwt_keys_free(k);
}
END_TEST

START_TEST(test_jwt_rejects_expired_and_not_yet_valid)
{
    jwt_keys_t *k = hs_keys();
    char *c1 = claims_json(NULL, "{\"iat\":1899990000,\"nbf\":1899990000,\"exp\":1899990900}");
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, c1), "expired");
    char *c2 = claims_json(NULL, "{\"nbf\":1900003600,\"exp\":1900004500}");
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, c2), "not valid yet");
    char *c3 = claims_json(NULL, "{\"iat\":1900003600}");
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, c3), "issued in the future");
    free(c1);
    free(c2);
    free(c3);
    jwt_keys_free(k);
}
END_TEST

START_TEST(test_jwt_rejects_wrong_issuer_and_audience)
{
    jwt_keys_t *k = hs_keys();
    char *c1 = claims_json(NULL, "{\"iss\":\"someone-else\"}");
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, c1), "issuer");
    char *c2 = claims_json(NULL, "{\"aud\":\"another-api\"}");
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, c2), "audience");
    char *c3 = claims_json(NULL, "{\"aud\":[\"x\",\"" AUD "\"]}");
    char *t = sign_with(JWT_ALG_HS256, SECRET, c3);
    jwt_claims_t c;
    err_t err = ERR_INIT;
    ck_assert_int_eq(jwt_token_verify(k, t, NOW, &c, &err), 0); /* aud as a list */
    free(t);
    free(c1);
    free(c2);
    free(c3);
    jwt_keys_free(k);
}
END_TEST

START_TEST(test_jwt_rejects_missing_claims)
{
    static const char *const required[] = {"sub", "role", "sid", "jti", "iat",
                                           "nbf", "exp",  "iss", "aud"};
    jwt_keys_t *k = hs_keys();
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        char *c = claims_json(required[i], NULL);
        expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, c), "token");
        free(c);
    }
    char *bad_role = claims_json(NULL, "{\"role\":\"root\"}");
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, bad_role), "role");
    char *str_exp = claims_json(NULL, "{\"exp\":\"1900000900\"}");
    expect_rejected(k, sign_with(JWT_ALG_HS256, SECRET, str_exp), "exp");
    free(bad_role);
    free(str_exp);
    expect_rejected(k, strdup("not-a-token"), "token");
    expect_rejected(k, strdup(""), "missing");
    jwt_keys_free(k);
}
END_TEST

START_TEST(test_jwt_es256_round_trip_and_algorithm_confusion)
{
    char *priv, *pub;
    ec_pair(&priv, &pub);
    err_t err = ERR_INIT;
    jwt_keys_t *k = jwt_keys_new(&(jwt_keys_opts_t){.alg = "ES256",
                                                    .private_pem = priv,
                                                    .public_pem = pub,
                                                    .issuer = ISS,
                                                    .audience = AUD,
                                                    .ttl_s = 600},
                                 &err);
    ck_assert_msg(k != NULL, "%s", err.msg);
    char *t = jwt_token_issue(k, "user-2", "customer", "sid-2", NOW, &err);
    jwt_claims_t c;
    ck_assert_int_eq(jwt_token_verify(k, t, NOW + 1, &c, &err), 0);
    ck_assert_int_eq(c.exp, NOW + 600);
    free(t);
    /* HS256 with the public key PEM as the HMAC secret: what libjwt alone accepts. */
    char *claims = claims_json(NULL, NULL);
    expect_rejected(k, sign_with(JWT_ALG_HS256, pub, claims), "algorithm HS256 not accepted");
    /* Signed by another key pair. */
    char *priv2, *pub2;
    ec_pair(&priv2, &pub2);
    expect_rejected(k, sign_with(JWT_ALG_ES256, priv2, claims), "signature");
    jwt_keys_free(k);
    /* A private key and a public key that do not belong together. */
    k = jwt_keys_new(&(jwt_keys_opts_t){.alg = "ES256",
                                        .private_pem = priv,
                                        .public_pem = pub2,
                                        .issuer = ISS,
                                        .audience = AUD,
                                        .ttl_s = 600},
                     &err);
    ck_assert_ptr_null(k);
    ck_assert_int_eq(err.code, ERR_INVALID);
    free(claims);
    free(priv);
    free(pub);
    free(priv2);
    free(pub2);
}
END_TEST

START_TEST(test_jwt_keys_reject_bad_configuration)
{
    err_t err = ERR_INIT;
    jwt_keys_opts_t o = {
        .alg = "HS256", .secret = "short", .issuer = ISS, .audience = AUD, .ttl_s = 900};
    ck_assert_ptr_null(jwt_keys_new(&o, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "JWT_SECRET"));
    ck_assert_ptr_null(strstr(err.msg, "short")); /* never echoes the secret */
    o.secret = SECRET;
    o.alg = "none";
    ck_assert_ptr_null(jwt_keys_new(&o, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "JWT_ALG"));
    o.alg = "HS256";
    o.ttl_s = 901;
    ck_assert_ptr_null(jwt_keys_new(&o, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "ACCESS_TOKEN_TTL"));
    o.ttl_s = 900;
    o.audience = "";
    ck_assert_ptr_null(jwt_keys_new(&o, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "JWT_AUDIENCE"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth_jwt");
    TCase *tc = check_case(s, "jwt", 30);
    tcase_add_test(tc, test_jwt_issued_token_verifies_with_its_claims);
    tcase_add_test(tc, test_jwt_cached_token_keeps_every_check);
    tcase_add_test(tc, test_jwt_rejects_alg_none);
    tcase_add_test(tc, test_jwt_rejects_another_hmac_algorithm);
    tcase_add_test(tc, test_jwt_rejects_a_wrong_signature);
    tcase_add_test(tc, test_jwt_rejects_expired_and_not_yet_valid);
    tcase_add_test(tc, test_jwt_rejects_wrong_issuer_and_audience);
    tcase_add_test(tc, test_jwt_rejects_missing_claims);
    tcase_add_test(tc, test_jwt_es256_round_trip_and_algorithm_confusion);
    tcase_add_test(tc, test_jwt_keys_reject_bad_configuration);
    return check_run(s, CK_FORK_GETENV);
}
