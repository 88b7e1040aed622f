/*
 * fuzz_page_token: the page tokens every ListX handler decodes straight from a
 * client: common/page_token (MAC'd cursors) and the base64url it is written in
 * (common/src/text.c).
 *
 * Each input is used three ways:
 *   - as a page token (cut at its first NUL, as a protobuf string would be):
 *     page_token_decode under a fixed key must not crash, and when it accepts, the
 *     cursor is in bounds and encoding it again gives exactly the same token (a
 *     client cannot find a second spelling of a token);
 *   - as a cursor (pos and id taken from its bytes): encode, then decode gives it
 *     back; under another scope it is PAGE_TOKEN_OTHER, under another list or key
 *     refused; changing any one character of it (position and value from the input)
 *     makes it refused: the MAC covers every byte;
 *   - for base64url itself: a decode into a buffer of exactly `cap` bytes (cap from
 *     the first byte, so ASan sees any write past it) is strict when it succeeds, and
 *     decode(encode(x)) == x.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/page_token.h"
#include "common/text.h"
#include "common/uuid.h"

/* ---- base64url ---- */

static char *token_encode(arena_t *a, const void *plain, size_t n)
{
    return text_base64url_encode(a, plain, n);
}

/* 0 and *n, or non-zero when `token` is refused. */
static int token_decode(const char *token, void *out, size_t cap, size_t *n)
{
    return text_base64url_decode(token, out, cap, n);
}

/* ---- properties ---- */

static void fail(const char *what, const char *token)
{
    fprintf(stderr, "fuzz_page_token: %s (token \"%.200s\")\n", what, token);
    abort();
}

static void check_decode(arena_t *a, const char *token, size_t cap)
{
    unsigned char *out = malloc(cap > 0 ? cap : 1);
    size_t n = SIZE_MAX;
    if (token_decode(token, cap > 0 ? out : out + 1, cap, &n) == 0) {
        if (n >= cap)
            fail("decoded more than cap - 1 bytes", token);
        if (out[n] != '\0')
            fail("decoded bytes are not NUL-terminated", token);
        if (strcmp(token_encode(a, out, n), token) != 0)
            fail("accepted a token that encode would not issue", token);
    }
    free(out);
}

static void check_round_trip(arena_t *a, const uint8_t *data, size_t size)
{
    char *token = token_encode(a, data, size);
    size_t cap = size + 1; /* the least that fits: the bytes and a NUL */
    unsigned char *out = malloc(cap);
    size_t n = SIZE_MAX;
    if (token_decode(token, out, cap, &n) != 0)
        fail("refused a token that encode issued", token);
    if (n != size || memcmp(out, data, size) != 0)
        fail("decode(encode(x)) != x", token);
    if (size > 0 && token_decode(token, out, size, &n) == 0)
        fail("decoded into a buffer without room for the NUL", token);
    free(out);
}

/* ---- page_token ---- */

#define KIND  "fuzz.ListThings"
#define SCOPE "user 0190b8a4-7d3e-7000-8000-000000000001"

static const page_key_t *fuzz_key(int which)
{
    static page_key_t *keys[2];
    if (!keys[0]) {
        err_t err = ERR_INIT;
        keys[0] = page_key_parse("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                                 &err);
        keys[1] = page_key_parse("ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                                 &err);
        if (!keys[0] || !keys[1])
            fail("cannot make the keys", err.msg);
    }
    return keys[which];
}

static void check_page_decode(arena_t *a, const char *token)
{
    page_cursor_t c;
    memset(&c, 0x5a, sizeof(c));
    if (page_token_decode(fuzz_key(0), KIND, SCOPE, token, &c) != PAGE_TOKEN_OK)
        return;
    if (c.pos < 0 || c.pos > PAGE_TOKEN_POS_MAX)
        fail("accepted a position out of bounds", token);
    if (memchr(c.id, '\0', sizeof(c.id)) == NULL || (c.id[0] && !uuid_valid(c.id)))
        fail("accepted an id that is not a UUID", token);
    const char *again = page_token_encode(fuzz_key(0), a, KIND, SCOPE, &c);
    if (!again || strcmp(again, token) != 0)
        fail("accepted a token that encode would not issue", token);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void check_page_round_trip(arena_t *a, const uint8_t *data, size_t size)
{
    uint8_t b[32] = {0};
    memcpy(b, data, size < sizeof(b) ? size : sizeof(b));
    page_cursor_t c = {0};
    uint64_t pos = 0;
    for (int i = 0; i < 8; i++)
        pos = pos << 8 | b[i];
    c.pos = (int64_t)(pos % ((uint64_t)PAGE_TOKEN_POS_MAX + 1));
    if (b[8] & 1) {
        static const char hex[] = "0123456789abcdef";
        char *p = c.id;
        for (int i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                *p++ = '-';
            *p++ = hex[b[9 + i] >> 4];
            *p++ = hex[b[9 + i] & 15];
        }
        *p = '\0';
    }
    const char *token = page_token_encode(fuzz_key(0), a, KIND, SCOPE, &c);
    if (!token)
        fail("refused to encode a cursor in bounds", "");
    if (strlen(token) > PAGE_TOKEN_TEXT_MAX)
        fail("wrote a token longer than PAGE_TOKEN_TEXT_MAX", token);
    page_cursor_t d;
    if (page_token_decode(fuzz_key(0), KIND, SCOPE, token, &d) != PAGE_TOKEN_OK || d.pos != c.pos ||
        strcmp(d.id, c.id) != 0)
        fail("decode(encode(cursor)) != cursor", token);
    if (page_token_decode(fuzz_key(0), KIND, "another scope", token, &d) != PAGE_TOKEN_OTHER)
        fail("a token continued another listing", token);
    if (page_token_decode(fuzz_key(0), "fuzz.ListOthers", SCOPE, token, &d) != PAGE_TOKEN_INVALID ||
        page_token_decode(fuzz_key(1), KIND, SCOPE, token, &d) != PAGE_TOKEN_INVALID)
        fail("a token decoded for another list or key", token);
    /* One character changed, to another of the alphabet. */
    char *forged = arena_strdup(a, token);
    size_t at = b[25] % strlen(forged);
    const char *was = strchr(b64url, forged[at]);
    forged[at] = b64url[((size_t)(was - b64url) + 1 + b[26] % 63) % 64];
    if (page_token_decode(fuzz_key(0), KIND, SCOPE, forged, &d) == PAGE_TOKEN_OK)
        fail("accepted a token with one character changed", forged);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    arena_t *a = arena_new(0);
    char *token = arena_strndup(a, (const char *)data, size);
    size_t len = strlen(token);
    check_page_decode(a, token);
    check_page_round_trip(a, data, size);
    /* cap: 0..255 from the first byte, and the exact size a valid token needs. */
    check_decode(a, token, size > 0 ? data[0] : 0);
    check_decode(a, token, len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) + 1);
    check_round_trip(a, data, size);
    arena_free(a);
    return 0;
}
