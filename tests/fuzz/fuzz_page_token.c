/*
 * fuzz_page_token: the page-token codec the services share today, base64url in
 * common/src/text.c (text_base64url_encode / text_base64url_decode), which every
 * ListX handler runs on a token that comes straight from the client.
 *
 * Each input is used twice:
 *   - as a token (cut at its first NUL, as a protobuf string would be), decoded
 *     into a heap buffer of exactly `cap` bytes, cap taken from the first byte, so
 *     ASan sees any write past the caller's buffer. When the decode succeeds, the
 *     decoder is strict (text.h): encoding the bytes must give the token back;
 *   - as plain bytes: encode then decode must give them back.
 *
 * Retargeting: when common/page_token (HMAC'd tokens) replaces the per-service
 * parsing, token_encode/token_decode below are the only functions to change; the
 * properties stay the same (decode(encode(x)) == x; decode of anything is bounded
 * and, when it succeeds, the token is the one encode would issue).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/text.h"

/* ---- the codec under test ---- */

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    arena_t *a = arena_new(0);
    char *token = arena_strndup(a, (const char *)data, size);
    size_t len = strlen(token);
    /* cap: 0..255 from the first byte, and the exact size a valid token needs. */
    check_decode(a, token, size > 0 ? data[0] : 0);
    check_decode(a, token, len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) + 1);
    check_round_trip(a, data, size);
    arena_free(a);
    return 0;
}
