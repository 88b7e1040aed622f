/*
 * crypto: randomness, SHA-256, SHA-1 and base64url (crypto.h).
 */
#include "crypto.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

void crypto_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            fprintf(stderr, "gateway: getrandom failed\n");
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

/* The digest of data under md as lower-case hex into out (2 * mdlen + 1 bytes). */
static void crypto_digest_hex(const EVP_MD *md, const char *name, const void *data, size_t n,
                              char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data, n, d, &len, md, NULL) != 1 || len != (unsigned)EVP_MD_get_size(md)) {
        fprintf(stderr, "gateway: %s failed\n", name);
        abort();
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * len] = '\0';
}

void crypto_sha256_hex(const void *data, size_t n, char out[CRYPTO_SHA256_HEX_LEN])
{
    crypto_digest_hex(EVP_sha256(), "SHA-256", data, n, out);
}

void crypto_sha1_hex(const void *data, size_t n, char out[CRYPTO_SHA1_HEX_LEN])
{
    crypto_digest_hex(EVP_sha1(), "SHA-1", data, n, out);
}

size_t crypto_b64url(const void *data, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const uint8_t *u = data;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < n ? (uint32_t)u[i + 1] << 8 : 0) |
                     (i + 2 < n ? u[i + 2] : 0);
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = tbl[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
    return o;
}
