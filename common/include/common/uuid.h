/*
 * uuid: identifiers for rows and events.
 *
 * New ids are UUIDv7 (RFC 9562: 48-bit Unix milliseconds, then random bits), so rows
 * inserted together sit together in B-tree indexes. Thread-safe.
 */
#ifndef COMMON_UUID_H
#define COMMON_UUID_H

#include <stdbool.h>

#include "common/arena.h"

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* uuid_new: a fresh UUIDv7 in canonical lower-case form into out. */
void uuid_new(char out[UUID_STR_LEN]);

/* uuid_valid: true if s is a canonical UUID (8-4-4-4-12 hex digits, any case). */
bool uuid_valid(const char *s);

/* uuid_canon: s in canonical form (a lower-case copy in the arena) if it is a UUID
 * (uuid_valid), else NULL. */
const char *uuid_canon(arena_t *a, const char *s);

#endif
