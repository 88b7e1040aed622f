/*
 * page_token: round trips, tamper evidence (every byte and every character), keys
 * (parsing, wrong key, random keys), list and scope separation, the bounds checked
 * after a genuine MAC (tokens built here with OpenSSL under the same key, as a
 * server with a bug or a leaked key would), and garbage.
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/page_token.h"
#include "common/text.h"

#define TEST_TIMEOUT_S 60

#define KEY_HEX   "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define OTHER_HEX "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KIND      "order.ListOrders"
#define SCOPE     "0190a5c4-7e1f-7000-8000-000000000001"
#define ROW_ID    "0190a5c4-7e1f-7a2b-8c3d-4e5f60718293"

static arena_t *a;
static page_key_t *key;

static void setup(void)
{
    a = arena_new(0);
    err_t err = ERR_INIT;
    key = page_key_parse(KEY_HEX, &err);
    ck_assert_msg(key != NULL, "%s", err.msg);
}

static void teardown(void)
{
    page_key_free(key);
    arena_free(a);
}

static page_cursor_t cursor(int64_t pos, const char *id)
{
    page_cursor_t c = {.pos = pos};
    snprintf(c.id, sizeof(c.id), "%s", id);
    return c;
}

static page_token_status_t decode(const page_key_t *k, const char *kind, const char *scope,
                                  const char *token, page_cursor_t *out)
{
    page_cursor_t ignored;
    return page_token_decode(k, kind, scope, token, out ? out : &ignored);
}

/* ---- round trips ---- */

START_TEST(test_tokens_round_trip_their_cursor)
{
    static const struct {
        int64_t pos;
        const char *id, *scope;
    } cases[] = {
        {1714564800123456, ROW_ID, SCOPE},
        {0, ROW_ID, "*"},
        {PAGE_TOKEN_POS_MAX, ROW_ID, ""},
        {42, "", SCOPE},
        {1, "", "1caf\xc3\xa9 au lait % _ \\"},
        {1714564800123456, "0190A5C4-7E1F-7A2B-8C3D-4E5F60718293", "0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        page_cursor_t in = cursor(cases[i].pos, cases[i].id), out;
        char *t = page_token_encode(key, a, KIND, cases[i].scope, &in);
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_le(strlen(t), PAGE_TOKEN_TEXT_MAX);
        memset(&out, 0x55, sizeof(out));
        ck_assert_int_eq(decode(key, KIND, cases[i].scope, t, &out), PAGE_TOKEN_OK);
        ck_assert_int_eq(out.pos, cases[i].pos);
        /* Ids come back lower-case, whatever case they went in. */
        ck_assert_str_eq(out.id, text_ascii_lower(a, cases[i].id));
    }
}
END_TEST

START_TEST(test_the_longest_token_is_page_token_text_max)
{
    page_cursor_t c = cursor(PAGE_TOKEN_POS_MAX, ROW_ID);
    ck_assert_uint_eq(strlen(page_token_encode(key, a, KIND, SCOPE, &c)), PAGE_TOKEN_TEXT_MAX);
}
END_TEST

START_TEST(test_tokens_are_opaque)
{
    page_cursor_t c = cursor(1714564800123456, ROW_ID);
    char *t = page_token_encode(key, a, KIND, SCOPE, &c);
    unsigned char raw[128];
    size_t n = 0;
    ck_assert_int_eq(text_base64url_decode(t, raw, sizeof(raw), &n), 0);
    /* Neither the scope nor any text of the cursor is readable in the token. */
    ck_assert_ptr_null(memmem(raw, n, SCOPE, strlen(SCOPE)));
    ck_assert_ptr_null(memmem(raw, n, "1714564800123456", 16));
    ck_assert_ptr_null(memmem(raw, n, ROW_ID, strlen(ROW_ID)));
}
END_TEST

/* ---- tampering ---- */

START_TEST(test_every_tampered_byte_is_rejected)
{
    static const char *const ids[] = {ROW_ID, ""};
    for (size_t k = 0; k < 2; k++) {
        page_cursor_t c = cursor(1714564800123456, ids[k]);
        char *t = page_token_encode(key, a, KIND, SCOPE, &c);
        unsigned char raw[128];
        size_t n = 0;
        ck_assert_int_eq(text_base64url_decode(t, raw, sizeof(raw), &n), 0);
        ck_assert_uint_eq(n, k == 0 ? 74 : 58);
        for (size_t i = 0; i < n; i++) {
            for (int bit = 0; bit < 8; bit++) {
                raw[i] ^= (unsigned char)(1u << bit);
                char *forged = text_base64url_encode(a, raw, n);
                ck_assert_msg(decode(key, KIND, SCOPE, forged, NULL) == PAGE_TOKEN_INVALID,
                              "byte %zu bit %d flipped: accepted", i, bit);
                raw[i] ^= (unsigned char)(1u << bit);
            }
        }
        /* Shorter and longer tokens: every truncation, and a byte more. */
        for (size_t len = 0; len < n; len++)
            ck_assert_int_eq(decode(key, KIND, SCOPE, text_base64url_encode(a, raw, len), NULL),
                             PAGE_TOKEN_INVALID);
        raw[n] = 0;
        ck_assert_int_eq(decode(key, KIND, SCOPE, text_base64url_encode(a, raw, n + 1), NULL),
                         PAGE_TOKEN_INVALID);
        ck_assert_int_eq(decode(key, KIND, SCOPE, t, NULL), PAGE_TOKEN_OK);
    }
}
END_TEST

START_TEST(test_every_changed_character_is_rejected)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. ";
    page_cursor_t c = cursor(1714564800123456, ROW_ID);
    char *t = page_token_encode(key, a, KIND, SCOPE, &c);
    char *forged = arena_strdup(a, t);
    for (size_t i = 0; t[i] != '\0'; i++) {
        for (const char *ch = alphabet; *ch != '\0'; ch++) {
            if (*ch == t[i])
                continue;
            forged[i] = *ch;
            ck_assert_msg(decode(key, KIND, SCOPE, forged, NULL) != PAGE_TOKEN_OK,
                          "character %zu as '%c': accepted", i, *ch);
        }
        forged[i] = t[i];
    }
}
END_TEST

START_TEST(test_a_wrong_key_or_list_is_rejected_another_scope_is_told)
{
    err_t err = ERR_INIT;
    page_key_t *other = page_key_parse(OTHER_HEX, &err);
    ck_assert_ptr_nonnull(other);
    page_cursor_t c = cursor(1714564800123456, ROW_ID);
    char *t = page_token_encode(key, a, KIND, SCOPE, &c);
    ck_assert_int_eq(decode(other, KIND, SCOPE, t, NULL), PAGE_TOKEN_INVALID);
    ck_assert_int_eq(decode(key, "product.ListProducts", SCOPE, t, NULL), PAGE_TOKEN_INVALID);
    ck_assert_int_eq(decode(key, KIND "x", SCOPE, t, NULL), PAGE_TOKEN_INVALID);
    ck_assert_int_eq(decode(key, KIND, "*", t, NULL), PAGE_TOKEN_OTHER);
    ck_assert_int_eq(decode(key, KIND, SCOPE "0", t, NULL), PAGE_TOKEN_OTHER);
    ck_assert_int_eq(decode(key, KIND, "", t, NULL), PAGE_TOKEN_OTHER);
    /* The same cursor under another key is another token. */
    ck_assert_str_ne(page_token_encode(other, a, KIND, SCOPE, &c), t);
    page_key_free(other);
}
END_TEST

/* ---- bounds after a genuine MAC ---- */

/* A token with any bytes, MAC'd as page_token.c does under KEY_HEX (page_token.h
 * documents the format): what a bug or a leaked key could produce. */
static char *forge(uint8_t version, uint8_t flags, uint64_t pos, const char *kind,
                   const char *scope)
{
    unsigned char k[32];
    for (size_t i = 0; i < 32; i++)
        k[i] = (unsigned char)i;
    unsigned char buf[128], mac[EVP_MAX_MD_SIZE], msg[512];
    unsigned int mac_len = 0;
    size_t n = 0, m = 0;
    buf[n++] = version;
    buf[n++] = flags;
    for (int shift = 56; shift >= 0; shift -= 8)
        buf[n++] = (unsigned char)(pos >> shift);
    if (flags & 1) {
        for (size_t i = 0; i < 16; i++)
            buf[n++] = (unsigned char)(0x40 + i);
    }
    /* scope digest: HMAC(key, "scope" 0 kind 0 scope)[0..16] */
    m = (size_t)snprintf((char *)msg, sizeof(msg), "scope%c%s%c%s", 0, kind, 0, scope);
    HMAC(EVP_sha256(), k, 32, msg, m, mac, &mac_len);
    memcpy(buf + n, mac, 16);
    n += 16;
    /* MAC: HMAC(key, "shop page token" 0 kind 0 || bytes) */
    m = (size_t)snprintf((char *)msg, sizeof(msg), "shop page token%c%s%c", 0, kind, 0);
    memcpy(msg + m, buf, n);
    HMAC(EVP_sha256(), k, 32, msg, m + n, mac, &mac_len);
    memcpy(buf + n, mac, 32);
    n += 32;
    return text_base64url_encode(a, buf, n);
}

START_TEST(test_the_format_is_as_documented)
{
    page_cursor_t out;
    char *t = forge(1, 1, 1714564800123456, KIND, SCOPE);
    ck_assert_int_eq(decode(key, KIND, SCOPE, t, &out), PAGE_TOKEN_OK);
    ck_assert_int_eq(out.pos, 1714564800123456);
    ck_assert_str_eq(out.id, "40414243-4445-4647-4849-4a4b4c4d4e4f");
    page_cursor_t c = cursor(1714564800123456, "40414243-4445-4647-4849-4a4b4c4d4e4f");
    ck_assert_str_eq(page_token_encode(key, a, KIND, SCOPE, &c), t);
    ck_assert_int_eq(decode(key, KIND, SCOPE, forge(1, 0, 7, KIND, SCOPE), &out), PAGE_TOKEN_OK);
    ck_assert_int_eq(out.pos, 7);
    ck_assert_str_eq(out.id, "");
}
END_TEST

START_TEST(test_out_of_range_fields_are_rejected_even_with_a_genuine_mac)
{
    static const uint64_t bad_pos[] = {
        (uint64_t)INT64_MAX,              /* the forged 2^63-1 */
        (uint64_t)PAGE_TOKEN_POS_MAX + 1, /* just past 9999-12-31 */
        (uint64_t)-1,                     /* -1 as int64 */
        (uint64_t)INT64_MIN,
    };
    for (size_t i = 0; i < sizeof(bad_pos) / sizeof(bad_pos[0]); i++)
        ck_assert_int_eq(decode(key, KIND, SCOPE, forge(1, 1, bad_pos[i], KIND, SCOPE), NULL),
                         PAGE_TOKEN_INVALID);
    ck_assert_int_eq(decode(key, KIND, SCOPE, forge(1, 1, PAGE_TOKEN_POS_MAX, KIND, SCOPE), NULL),
                     PAGE_TOKEN_OK);
    /* Unknown versions and flags. */
    ck_assert_int_eq(decode(key, KIND, SCOPE, forge(0, 1, 1, KIND, SCOPE), NULL),
                     PAGE_TOKEN_INVALID);
    ck_assert_int_eq(decode(key, KIND, SCOPE, forge(2, 1, 1, KIND, SCOPE), NULL),
                     PAGE_TOKEN_INVALID);
    ck_assert_int_eq(decode(key, KIND, SCOPE, forge(1, 3, 1, KIND, SCOPE), NULL),
                     PAGE_TOKEN_INVALID);
    ck_assert_int_eq(decode(key, KIND, SCOPE, forge(1, 0x80, 1, KIND, SCOPE), NULL),
                     PAGE_TOKEN_INVALID);
    /* The encoder refuses what the decoder would. */
    page_cursor_t c = cursor(-1, ROW_ID);
    ck_assert_ptr_null(page_token_encode(key, a, KIND, SCOPE, &c));
    c = cursor(PAGE_TOKEN_POS_MAX + 1, ROW_ID);
    ck_assert_ptr_null(page_token_encode(key, a, KIND, SCOPE, &c));
    c = cursor(1, "not-a-uuid");
    ck_assert_ptr_null(page_token_encode(key, a, KIND, SCOPE, &c));
}
END_TEST

/* ---- garbage ---- */

START_TEST(test_garbage_is_rejected)
{
    /* The forgery: the old plain-text format with created_at 2^63-1. */
    const char *old = "9223372036854775807:" ROW_ID ":" SCOPE;
    char long_token[2000];
    memset(long_token, 'A', sizeof(long_token) - 1);
    long_token[sizeof(long_token) - 1] = '\0';
    const char *bad[] = {
        "",
        "A",
        "AA",
        "!!!!",
        "AAAA====",
        "AQ==",
        text_base64url_encode(a, old, strlen(old)),
        text_base64url_encode(a, "1714564800123456:" ROW_ID ":*",
                              strlen("1714564800123456:" ROW_ID ":*")),
        long_token,
        long_token + sizeof(long_token) - 1 - PAGE_TOKEN_TEXT_MAX, /* the longest length */
        long_token + sizeof(long_token) - 2 - PAGE_TOKEN_TEXT_MAX, /* one more */
        "AQFhYmNk\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(decode(key, KIND, SCOPE, bad[i], NULL) == PAGE_TOKEN_INVALID,
                      "garbage %zu accepted", i);
    ck_assert_int_eq(decode(key, KIND, SCOPE, NULL, NULL), PAGE_TOKEN_INVALID);
}
END_TEST

/* ---- keys ---- */

START_TEST(test_keys_parse_from_hex_or_base64_of_32_bytes_or_more)
{
    static const char *const good[] = {
        KEY_HEX,
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",   /* base64 of the same 32 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",    /* unpadded */
        "q83vEjRWePv_v_v_v_v_v_v_v_v_v_v_v_v_v_v_v_v_vw", /* base64url, 34 bytes */
        "q83vEjRWePv/v/v/v/v/v/v/v/v/v/v/v/v/v/v/v/v/vw==",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err_t err = ERR_INIT;
        page_key_t *k = page_key_parse(good[i], &err);
        ck_assert_msg(k != NULL, "key %zu refused: %s", i, err.msg);
        page_key_free(k);
    }
    /* Hex and base64 spellings of one key are one key. */
    err_t err = ERR_INIT;
    page_key_t *b64 = page_key_parse(good[2], &err);
    page_cursor_t c = cursor(5, ROW_ID);
    char *t = page_token_encode(key, a, KIND, SCOPE, &c);
    ck_assert_int_eq(decode(b64, KIND, SCOPE, t, NULL), PAGE_TOKEN_OK);
    page_key_free(b64);

    char too_long[600];
    memset(too_long, 'a', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    static const char *const bad_static[] = {
        "",
        "short",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e", /* 31 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",                   /* 31 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=extra",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd Hh8=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=", /* stray low bits */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8===",
    };
    for (size_t i = 0; i < sizeof(bad_static) / sizeof(bad_static[0]) + 2; i++) {
        const char *text = i < sizeof(bad_static) / sizeof(bad_static[0])    ? bad_static[i]
                           : i == sizeof(bad_static) / sizeof(bad_static[0]) ? too_long
                                                                             : NULL;
        err_clear(&err);
        ck_assert_msg(page_key_parse(text, &err) == NULL, "key %zu accepted", i);
        ck_assert_int_eq(err.code, ERR_INVALID);
        /* The message never quotes the secret. */
        ck_assert_ptr_null(strstr(err.msg, "AAEC"));
        ck_assert_ptr_null(strstr(err.msg, "0001020304"));
    }
}
END_TEST

START_TEST(test_random_keys_differ_and_work)
{
    page_key_t *k1 = page_key_random(), *k2 = page_key_random();
    page_cursor_t c = cursor(5, ROW_ID), out;
    char *t = page_token_encode(k1, a, KIND, SCOPE, &c);
    ck_assert_int_eq(decode(k1, KIND, SCOPE, t, &out), PAGE_TOKEN_OK);
    ck_assert_int_eq(decode(k2, KIND, SCOPE, t, NULL), PAGE_TOKEN_INVALID);
    ck_assert_str_ne(page_token_encode(k2, a, KIND, SCOPE, &c), t);
    page_key_free(k1);
    page_key_free(k2);
    page_key_free(NULL);
}
END_TEST

/* ---- the request field ---- */

START_TEST(test_field_answers_a_violation_on_page_token)
{
    page_cursor_t row = cursor(1720000000000000, ROW_ID), seq = cursor(42, "");
    const char *row_tok = page_token_encode(key, a, KIND, SCOPE, &row);
    const char *seq_tok = page_token_encode(key, a, KIND, SCOPE, &seq);
    const char *zero_tok = page_token_encode(key, a, KIND, SCOPE, &(page_cursor_t){.pos = 0});
    static const char other_scope[] = "0190a5c4-7e1f-7000-8000-000000000002";
    const struct {
        const char *token, *scope;
        page_cursor_kind_t ck;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {row_tok, SCOPE, PAGE_CURSOR_ROW, NULL},
        {seq_tok, SCOPE, PAGE_CURSOR_SEQ, NULL},
        {row_tok, other_scope, PAGE_CURSOR_ROW, "was issued for another user_id"},
        {row_tok, SCOPE, PAGE_CURSOR_SEQ, "is not a valid page token"},
        {seq_tok, SCOPE, PAGE_CURSOR_ROW, "is not a valid page token"},
        {zero_tok, SCOPE, PAGE_CURSOR_SEQ, "is not a valid page token"},
        {"garbage", SCOPE, PAGE_CURSOR_ROW, "is not a valid page token"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err_t err = ERR_INIT;
        page_cursor_t out = {0};
        int rc = page_token_field(key, KIND, cases[i].scope, cases[i].token, "user_id", cases[i].ck,
                                  &out, &err);
        if (cases[i].why == NULL) {
            ck_assert_msg(rc == 0 && err.code == 0, "case %zu refused", i);
            ck_assert_int_eq(out.pos, cases[i].ck == PAGE_CURSOR_ROW ? row.pos : seq.pos);
        } else {
            ck_assert_msg(rc == ERR_INVALID && err.code == ERR_INVALID, "case %zu: %d", i, rc);
            ck_assert_uint_eq(err.n_fields, 1);
            ck_assert_str_eq(err.fields[0].field, "page_token");
            ck_assert_str_eq(err.fields[0].description, cases[i].why);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("page_token");
    TCase *tc = check_case(s, "page_token", TEST_TIMEOUT_S);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_tokens_round_trip_their_cursor);
    tcase_add_test(tc, test_the_longest_token_is_page_token_text_max);
    tcase_add_test(tc, test_tokens_are_opaque);
    tcase_add_test(tc, test_every_tampered_byte_is_rejected);
    tcase_add_test(tc, test_every_changed_character_is_rejected);
    tcase_add_test(tc, test_a_wrong_key_or_list_is_rejected_another_scope_is_told);
    tcase_add_test(tc, test_the_format_is_as_documented);
    tcase_add_test(tc, test_out_of_range_fields_are_rejected_even_with_a_genuine_mac);
    tcase_add_test(tc, test_garbage_is_rejected);
    tcase_add_test(tc, test_keys_parse_from_hex_or_base64_of_32_bytes_or_more);
    tcase_add_test(tc, test_random_keys_differ_and_work);
    tcase_add_test(tc, test_field_answers_a_violation_on_page_token);
    return check_run(s, CK_FORK_GETENV);
}
