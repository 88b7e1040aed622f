/*
 * crypto: the few primitives the gateway needs, on getrandom(2) and OpenSSL's
 * libcrypto (already a dependency of libjwt).
 */
#ifndef GATEWAY_CRYPTO_H
#define GATEWAY_CRYPTO_H

#include <stddef.h>

#define CRYPTO_SHA256_HEX_LEN 65 /* 64 hex digits and the NUL */
#define CRYPTO_SHA1_HEX_LEN   41 /* 40 hex digits and the NUL */

/* crypto_random: n bytes from the kernel's CSPRNG. Aborts if it fails (it does
 * not once the pool is initialised; a gateway without randomness must not run). */
void crypto_random(void *buf, size_t n);

/* crypto_sha256_hex: the SHA-256 of data as lower-case hex into out. */
void crypto_sha256_hex(const void *data, size_t n, char out[CRYPTO_SHA256_HEX_LEN]);

/* crypto_sha1_hex: the SHA-1 of data as lower-case hex into out. Only to name
 * things the way another program does (Redis names scripts by SHA-1), never for
 * integrity. */
void crypto_sha1_hex(const void *data, size_t n, char out[CRYPTO_SHA1_HEX_LEN]);

/* crypto_b64url: data as unpadded base64url into out, which must hold
 * 4 * ceil(n / 3) + 1 bytes. Returns the length written (without the NUL). */
size_t crypto_b64url(const void *data, size_t n, char *out);

#endif
