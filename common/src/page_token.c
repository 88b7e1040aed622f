/*
 * page_token: MAC'd page tokens (page_token.h) on OpenSSL's HMAC-SHA256.
 */
#include "common/page_token.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "alloc_internal.h"
#include "common/text.h"

#define PAGE_VERSION      1
#define PAGE_FLAG_ID      0x01
#define PAGE_MAC_LEN      32 /* HMAC-SHA256 */
#define PAGE_SCOPE_LEN    16
#define PAGE_ID_LEN       16
#define PAGE_HEAD_LEN     (1 + 1 + 8) /* version, flags, pos */
#define PAGE_BYTES_MAX    (PAGE_HEAD_LEN + PAGE_ID_LEN + PAGE_SCOPE_LEN + PAGE_MAC_LEN)
#define PAGE_KEY_TEXT_MAX (2 * PAGE_KEY_MAX)

_Static_assert((4 * PAGE_BYTES_MAX + 2) / 3 == PAGE_TOKEN_TEXT_MAX,
               "PAGE_TOKEN_TEXT_MAX is the unpadded base64url length of the longest token");

struct page_key {
    size_t n;
    unsigned char bytes[PAGE_KEY_MAX];
};

/* ---- keys ---- */

static int page_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Both base64 alphabets: "+/" and "-_". */
static int page_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Bytes of hex text s (n characters, all hex digits, n even) into out. */
static size_t page_key_hex(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i += 2)
        out[i / 2] = (unsigned char)(page_hex_value(s[i]) << 4 | page_hex_value(s[i + 1]));
    return n / 2;
}

/* Bytes of base64 text s (n characters, "=" padding optional) into out (room for
 * PAGE_KEY_MAX); -1 if it is not canonical base64 or too long. */
static long page_key_b64(const char *s, size_t n, unsigned char *out)
{
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0))
        return -1;
    uint32_t bits = 0;
    int n_bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int v = page_b64_value(s[i]);
        if (v < 0)
            return -1;
        bits = bits << 6 | (uint32_t)v;
        if ((n_bits += 6) >= 8) {
            n_bits -= 8;
            if (k == PAGE_KEY_MAX)
                return -1;
            out[k++] = (unsigned char)(bits >> n_bits);
            bits &= (1u << n_bits) - 1;
        }
    }
    return bits == 0 ? (long)k : -1;
}

page_key_t *page_key_parse(const char *text, err_t *err)
{
    size_t n = text != NULL ? strnlen(text, PAGE_KEY_TEXT_MAX + 1) : 0;
    bool hex = n > 0 && n % 2 == 0 && n <= PAGE_KEY_TEXT_MAX;
    for (size_t i = 0; hex && i < n; i++)
        hex = page_hex_value(text[i]) >= 0;
    page_key_t *k = common__xcalloc(1, sizeof(*k));
    long got = hex                               ? (long)page_key_hex(text, n, k->bytes)
               : n > 0 && n <= PAGE_KEY_TEXT_MAX ? page_key_b64(text, n, k->bytes)
                                                 : -1;
    if (got < PAGE_KEY_MIN || got > PAGE_KEY_MAX) {
        page_key_free(k);
        err_set(err, ERR_INVALID,
                "must be %d..%d bytes written as hex digits or base64 (e.g. openssl rand -hex 32)",
                PAGE_KEY_MIN, PAGE_KEY_MAX);
        return NULL;
    }
    k->n = (size_t)got;
    return k;
}

page_key_t *page_key_random(void)
{
    page_key_t *k = common__xcalloc(1, sizeof(*k));
    k->n = PAGE_KEY_MIN;
    for (size_t got = 0; got < k->n;) {
        ssize_t r = getrandom(k->bytes + got, k->n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "fatal: getrandom: %s\n", strerror(errno));
            abort();
        }
        got += (size_t)r;
    }
    return k;
}

void page_key_free(page_key_t *key)
{
    if (key == NULL)
        return;
    OPENSSL_cleanse(key->bytes, sizeof(key->bytes));
    free(key);
}

/* ---- MACs ---- */

static EVP_MAC *page_hmac;
static pthread_once_t page_hmac_once = PTHREAD_ONCE_INIT;

static void page_hmac_fetch(void)
{
    page_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (page_hmac == NULL) {
        fprintf(stderr, "fatal: OpenSSL has no HMAC\n");
        abort();
    }
}

typedef struct page_part {
    const void *p;
    size_t n;
} page_part_t;

/* HMAC-SHA256 under key over the parts, one after the other. Aborts if OpenSSL
 * fails, which only running out of memory can make it do. */
static void page_mac(const page_key_t *key, const page_part_t *parts, size_t n_parts,
                     unsigned char out[PAGE_MAC_LEN])
{
    pthread_once(&page_hmac_once, page_hmac_fetch);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(page_hmac);
    size_t len = 0;
    bool ok = ctx != NULL && EVP_MAC_init(ctx, key->bytes, key->n, params) == 1;
    for (size_t i = 0; ok && i < n_parts; i++)
        ok = EVP_MAC_update(ctx, parts[i].p, parts[i].n) == 1;
    ok = ok && EVP_MAC_final(ctx, out, &len, PAGE_MAC_LEN) == 1 && len == PAGE_MAC_LEN;
    EVP_MAC_CTX_free(ctx);
    if (!ok) {
        fprintf(stderr, "fatal: HMAC-SHA256 failed\n");
        abort();
    }
}

/* The keyed digest of (kind, scope). Strings end at their NUL, which the input
 * keeps as a separator, so distinct pairs never give the same input. */
static void page_scope_digest(const page_key_t *key, const char *kind, const char *scope,
                              unsigned char out[PAGE_SCOPE_LEN])
{
    unsigned char mac[PAGE_MAC_LEN];
    const page_part_t parts[] = {
        {"scope", sizeof("scope")},
        {kind, strlen(kind) + 1},
        {scope, strlen(scope)},
    };
    page_mac(key, parts, sizeof(parts) / sizeof(parts[0]), mac);
    memcpy(out, mac, PAGE_SCOPE_LEN);
}

/* The MAC of a token's bytes before the MAC, for list `kind`. */
static void page_body_mac(const page_key_t *key, const char *kind, const unsigned char *body,
                          size_t n, unsigned char out[PAGE_MAC_LEN])
{
    const page_part_t parts[] = {
        {"shop page token", sizeof("shop page token")},
        {kind, strlen(kind) + 1},
        {body, n},
    };
    page_mac(key, parts, sizeof(parts) / sizeof(parts[0]), out);
}

/* ---- tokens ---- */

/* A canonical UUID (uuid_valid) as its 16 bytes. */
static void page_uuid_bytes(const char *s, unsigned char out[PAGE_ID_LEN])
{
    size_t k = 0;
    for (size_t i = 0; s[i] != '\0' && k < PAGE_ID_LEN; i++) {
        if (s[i] == '-')
            continue;
        out[k++] = (unsigned char)(page_hex_value(s[i]) << 4 | page_hex_value(s[i + 1]));
        i++;
    }
}

static void page_uuid_text(const unsigned char in[PAGE_ID_LEN], char out[UUID_STR_LEN])
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < PAGE_ID_LEN; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = digits[in[i] >> 4];
        out[o++] = digits[in[i] & 15];
    }
    out[o] = '\0';
}

char *page_token_encode(const page_key_t *key, arena_t *a, const char *kind, const char *scope,
                        const page_cursor_t *c)
{
    bool has_id = c->id[0] != '\0';
    if (c->pos < 0 || c->pos > PAGE_TOKEN_POS_MAX || (has_id && !uuid_valid(c->id)))
        return NULL;
    unsigned char buf[PAGE_BYTES_MAX];
    size_t n = 0;
    buf[n++] = PAGE_VERSION;
    buf[n++] = has_id ? PAGE_FLAG_ID : 0;
    for (int shift = 56; shift >= 0; shift -= 8)
        buf[n++] = (unsigned char)((uint64_t)c->pos >> shift);
    if (has_id) {
        page_uuid_bytes(c->id, buf + n);
        n += PAGE_ID_LEN;
    }
    page_scope_digest(key, kind, scope, buf + n);
    n += PAGE_SCOPE_LEN;
    page_body_mac(key, kind, buf, n, buf + n);
    n += PAGE_MAC_LEN;
    return text_base64url_encode(a, buf, n);
}

page_token_status_t page_token_decode(const page_key_t *key, const char *kind, const char *scope,
                                      const char *token, page_cursor_t *out)
{
    /* Bounded before anything else is done with it. */
    size_t len = token != NULL ? strnlen(token, PAGE_TOKEN_TEXT_MAX + 1) : 0;
    if (len == 0 || len > PAGE_TOKEN_TEXT_MAX)
        return PAGE_TOKEN_INVALID;
    unsigned char buf[PAGE_BYTES_MAX + 1]; /* text_base64url_decode adds a NUL */
    size_t n = 0;
    if (text_base64url_decode(token, buf, sizeof(buf), &n) != 0 || n < PAGE_HEAD_LEN ||
        buf[0] != PAGE_VERSION || (buf[1] & ~PAGE_FLAG_ID) != 0)
        return PAGE_TOKEN_INVALID;
    bool has_id = (buf[1] & PAGE_FLAG_ID) != 0;
    size_t body = PAGE_HEAD_LEN + (has_id ? PAGE_ID_LEN : 0) + PAGE_SCOPE_LEN;
    if (n != body + PAGE_MAC_LEN)
        return PAGE_TOKEN_INVALID;
    unsigned char mac[PAGE_MAC_LEN], digest[PAGE_SCOPE_LEN];
    page_body_mac(key, kind, buf, body, mac);
    if (CRYPTO_memcmp(mac, buf + body, PAGE_MAC_LEN) != 0)
        return PAGE_TOKEN_INVALID;
    page_scope_digest(key, kind, scope, digest);
    if (CRYPTO_memcmp(digest, buf + body - PAGE_SCOPE_LEN, PAGE_SCOPE_LEN) != 0)
        return PAGE_TOKEN_OTHER;
    uint64_t pos = 0;
    for (size_t i = 2; i < PAGE_HEAD_LEN; i++)
        pos = pos << 8 | buf[i];
    if (pos > (uint64_t)PAGE_TOKEN_POS_MAX)
        return PAGE_TOKEN_INVALID;
    out->pos = (int64_t)pos;
    if (has_id)
        page_uuid_text(buf + PAGE_HEAD_LEN, out->id);
    else
        out->id[0] = '\0';
    return PAGE_TOKEN_OK;
}

int page_token_field(const page_key_t *key, const char *kind, const char *scope, const char *token,
                     const char *other, page_cursor_kind_t ck, page_cursor_t *out, err_t *err)
{
    page_token_status_t st = page_token_decode(key, kind, scope, token, out);
    if (st == PAGE_TOKEN_OTHER)
        return err_field_add(err, "page_token", "was issued for another %s", other);
    bool ok = st == PAGE_TOKEN_OK &&
              (ck == PAGE_CURSOR_ROW ? out->id[0] != '\0' : out->pos >= 1 && out->id[0] == '\0');
    if (!ok)
        return err_field_add(err, "page_token", "is not a valid page token");
    return 0;
}
