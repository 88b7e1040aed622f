/*
 * page_token: the opaque, tamper-evident page tokens of every list (common.proto:
 * `page_token` / `next_page_token`), written once for order-, product- and user-svc.
 *
 * A token carries the cursor of the last row of the previous page, the listing it
 * was issued for, and a MAC under a key only the service's instances hold, so a
 * client can neither forge a cursor nor replay a token against another listing, and
 * nothing of a token reaches SQL before it has been verified in full:
 *
 *   token = base64url (RFC 4648 §5, unpadded) of
 *     version  1 byte   1
 *     flags    1 byte   bit 0: an id follows; the other bits are 0
 *     pos      8 bytes  big-endian, 0..PAGE_TOKEN_POS_MAX: created_at in µs since the
 *                       epoch, or a sequence number
 *     id      16 bytes  the last row's UUID (only with flag bit 0)
 *     scope   16 bytes  HMAC-SHA256(key, "scope" 0 kind 0 scope), first 16 bytes
 *     mac     32 bytes  HMAC-SHA256(key, "shop page token" 0 kind 0 || every byte above)
 *
 * `kind` names the list ("order.ListOrders"), so a token of one list never decodes
 * as one of another even under the same key; `scope` is the listing within it (the
 * user whose orders, the product filter), so a token only continues the listing it
 * came from. The scope digest is keyed, so a token says nothing about the filter.
 * Decoding checks, in order: the length before decoding anything, base64url
 * strictly, version and flags, the exact length, the MAC (constant time), the scope
 * (constant time), then the bounds of every field. pos is bounded so that
 * `timestamptz 'epoch' + pos * interval '1 microsecond'` cannot overflow.
 *
 * Keys. A key is 32..PAGE_KEY_MAX bytes; every instance of a service must hold the
 * same one (PAGE_TOKEN_KEY, svc.h), or a token issued by one instance is refused by
 * the next. A process without a configured key uses a random one: its tokens stop
 * working when it restarts and on its peers.
 *
 * Thread-safe: a key is immutable once made.
 */
#ifndef COMMON_PAGE_TOKEN_H
#define COMMON_PAGE_TOKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/uuid.h"

#define PAGE_KEY_MIN 32  /* bytes: HMAC-SHA256's output length */
#define PAGE_KEY_MAX 128 /* bytes */
/* 9999-12-31T23:59:59.999999Z in µs since the epoch: far below what PostgreSQL's
 * interval and timestamptz can hold. */
#define PAGE_TOKEN_POS_MAX INT64_C(253402300799999999)
/* The longest token page_token_encode writes (characters, without the NUL); longer
 * input is refused before it is decoded. */
#define PAGE_TOKEN_TEXT_MAX 99

typedef struct page_key page_key_t;

/* page_key_parse: a key from its setting: hex (an even number of hex digits, e.g.
 * `openssl rand -hex 32`) or base64 (standard or url-safe alphabet, padding
 * optional, e.g. `head -c 32 /dev/urandom | base64`), decoding to
 * PAGE_KEY_MIN..PAGE_KEY_MAX bytes. Text made only of hex digits is read as hex.
 * NULL with ERR_INVALID and a message that does not quote the value. Owned by the
 * caller (page_key_free). */
page_key_t *page_key_parse(const char *text, err_t *err);

/* page_key_random: a fresh random key of PAGE_KEY_MIN bytes (getrandom; aborts if
 * the system has no randomness). Owned by the caller. */
page_key_t *page_key_random(void);

/* page_key_free: NULL is accepted. */
void page_key_free(page_key_t *key);

/* The position of a list after its last row. */
typedef struct page_cursor {
    int64_t pos;           /* 0..PAGE_TOKEN_POS_MAX: created_at in µs, or a sequence number */
    char id[UUID_STR_LEN]; /* lower-case UUID of the last row, or "" when the list has none */
} page_cursor_t;

/* page_token_encode: the token for cursor c of list `kind`, listing `scope` (both
 * NUL-terminated, any bytes; "" is a scope). NULL if c is out of bounds (pos, or an id
 * that is neither "" nor a UUID): a bug in the caller, never a client's input.
 * Owned by the arena. */
char *page_token_encode(const page_key_t *key, arena_t *a, const char *kind, const char *scope,
                        const page_cursor_t *c);

typedef enum {
    PAGE_TOKEN_OK = 0,
    PAGE_TOKEN_INVALID = -1, /* not a token of this list under this key, or out of bounds */
    PAGE_TOKEN_OTHER = -2,   /* a genuine token of this list, issued for another scope */
} page_token_status_t;

/* page_token_decode: the cursor in `token` if it is a token page_token_encode wrote
 * under `key` for `kind` and `scope`; *out is set only on PAGE_TOKEN_OK (its id is
 * lower-case, or "" when the token has none). Never allocates; the work done before
 * the MAC is checked is bounded by PAGE_TOKEN_TEXT_MAX. */
page_token_status_t page_token_decode(const page_key_t *key, const char *kind, const char *scope,
                                      const char *token, page_cursor_t *out);

/* What a list's cursor holds: the last row (an id, pos its created_at) or a sequence
 * number (no id, pos >= 1). */
typedef enum { PAGE_CURSOR_ROW, PAGE_CURSOR_SEQ } page_cursor_kind_t;

/* page_token_field: page_token_decode for a request's "page_token" field: 0 with *out
 * set, or a violation on "page_token" added to err (returns err->code): "was issued
 * for another <other>" for another scope (other names the request fields the scope
 * comes from), "is not a valid page token" for anything else, including a cursor not
 * of kind `ck`. */
int page_token_field(const page_key_t *key, const char *kind, const char *scope, const char *token,
                     const char *other, page_cursor_kind_t ck, page_cursor_t *out, err_t *err);

#endif
