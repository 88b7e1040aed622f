/*
 * text: the request-text helpers every service repeats around its own rules.
 *
 * UTF-8 checking and character counting (contracts state lengths in characters, i.e.
 * Unicode code points), base64url for opaque page tokens, ASCII lower-casing and the
 * update_mask → bit set lookup. What a field may hold (its limits, its messages
 * beyond the generic ones here) stays in the service that owns it.
 *
 * All functions are pure or write only into what the caller passes (an arena, a
 * buffer, an err_t), so they are thread-safe as long as those are not shared.
 */
#ifndef COMMON_TEXT_H
#define COMMON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/arena.h"
#include "common/err.h"

/* Flags of text_utf8_len: which control characters (C0, DEL and C1) count as text. */
enum {
    TEXT_NO_CONTROLS = 0,    /* any control character makes the text invalid */
    TEXT_ALLOW_BLANKS = 1,   /* tab, LF and CR are text; other controls are not */
    TEXT_ALLOW_CONTROLS = 2, /* every control character is text */
};

/* text_utf8_valid: true if the NUL-terminated s is well-formed UTF-8: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing past U+10FFFF, no stray or missing
 * continuation bytes. Control characters are valid here. */
bool text_utf8_valid(const char *s);

/* text_utf8_len: the number of characters (code points) of the NUL-terminated s, or
 * -1 if s is not well-formed UTF-8 (as text_utf8_valid) or holds a control character
 * that `flags` (TEXT_*) does not allow. */
long text_utf8_len(const char *s, unsigned flags);

/* text_check_chars: checks that s is UTF-8 of min..max characters without control
 * characters; otherwise adds one violation on `field` ("must be utf-8 text without
 * control characters" or "must be <min>..<max> characters"). Returns 0 if s passes,
 * else ERR_INVALID, or err->code if that was already set. */
int text_check_chars(const char *field, const char *s, long min, long max, err_t *err);

/* text_utf8_repair: a copy of the NUL-terminated s in the arena in which every byte
 * that does not start a well-formed sequence (as text_utf8_valid) is replaced by
 * U+FFFD, so the copy is always valid UTF-8; valid text is copied unchanged. For
 * rendering text that should have been UTF-8 and is not (JSON cannot carry it).
 * Owned by the arena. */
char *text_utf8_repair(arena_t *a, const char *s);

/* text_ascii_lower: a copy of s in the arena with A-Z lower-cased (other bytes as
 * they are), e.g. to canonicalise a UUID. Owned by the arena. */
char *text_ascii_lower(arena_t *a, const char *s);

/* text_email_canon: the one form of an email address by which an account is found
 * and its attempts are counted, everywhere: ASCII blanks (space, \t, \n, \v, \f,
 * \r) around it removed and A-Z lower-cased; every other byte as it is (no Unicode
 * folding, which would depend on a locale). PostgreSQL's lower() under COLLATE "C"
 * folds exactly the same bytes. Owned by the arena. */
char *text_email_canon(arena_t *a, const char *s);

/* text_base64url_encode: the n bytes at in as base64url (RFC 4648 §5) without
 * padding, NUL-terminated, in the arena. Owned by the arena. */
char *text_base64url_encode(arena_t *a, const void *in, size_t n);

/* text_base64url_decode: decodes the NUL-terminated base64url text `in` (no padding)
 * into out, NUL-terminates it, and sets *n_out (if not NULL) to the number of bytes
 * decoded (the NUL not counted; the bytes may contain NUL themselves). Strict: only
 * the exact output of text_base64url_encode is accepted, so a character outside the
 * alphabet, "=" padding, a length of 4k+1, or non-zero unused bits in the last
 * character are ERR_INVALID; so is output that does not fit in cap bytes with its
 * NUL. Returns 0 or ERR_INVALID (out then holds nothing useful). */
int text_base64url_decode(const char *in, void *out, size_t cap, size_t *n_out);

/* text_name_char: true for the characters of the fleet's plain names (certificate CNs,
 * Kafka ids): [A-Za-z0-9._-]. */
bool text_name_char(char c);

/* One name an update_mask may hold and the bit it stands for. */
typedef struct text_mask_name {
    const char *name;
    unsigned bit; /* non-zero */
} text_mask_name_t;

/* text_mask_bits: the union of the bits of the n names in mask, looked up in the
 * n_names entries of names (case-sensitive). Adds a violation on "update_mask" for
 * an empty mask ("must name at least one field") and one per unknown name ("unknown
 * field \"<name>\"", cut at 40 bytes); unknown names add no bit. */
unsigned text_mask_bits(char *const *mask, size_t n, const text_mask_name_t *names, size_t n_names,
                        err_t *err);

#endif
