/*
 * text: UTF-8 checks, base64url and update_mask lookup (text.h).
 *
 * The decoder is strict because a page token is opaque: accepting a second spelling
 * of the same bytes would let a client send something the service never issued.
 */
#include "common/text.h"

#include <stdint.h>
#include <string.h>

static const char text_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Decodes one UTF-8 sequence at s; its length, or 0 if invalid (overlong forms,
 * surrogates and code points past U+10FFFF included). A NUL continuation byte fails
 * the 10xxxxxx test, so the scan never passes the end of s. */
static size_t text_utf8_seq(const unsigned char *s, uint32_t *cp)
{
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n = s[0] < 0x80             ? 1
               : (s[0] & 0xe0) == 0xc0 ? 2
               : (s[0] & 0xf0) == 0xe0 ? 3
               : (s[0] & 0xf8) == 0xf0 ? 4
                                       : 0;
    if (n == 0)
        return 0;
    uint32_t c = n == 1 ? s[0] : s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

static bool text_control_allowed(uint32_t cp, unsigned flags)
{
    bool control = cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
    if (!control || (flags & TEXT_ALLOW_CONTROLS))
        return true;
    return (flags & TEXT_ALLOW_BLANKS) && (cp == '\t' || cp == '\n' || cp == '\r');
}

long text_utf8_len(const char *s, unsigned flags)
{
    long chars = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; chars++) {
        uint32_t cp;
        size_t n = text_utf8_seq(p, &cp);
        if (n == 0 || !text_control_allowed(cp, flags))
            return -1;
        p += n;
    }
    return chars;
}

bool text_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

bool text_utf8_valid(const char *s)
{
    return text_utf8_len(s, TEXT_ALLOW_CONTROLS) >= 0;
}

int text_check_chars(const char *field, const char *s, long min, long max, err_t *err)
{
    long n = text_utf8_len(s, TEXT_NO_CONTROLS);
    if (n < 0)
        return err_field_add(err, field, "must be utf-8 text without control characters");
    if (n < min || n > max)
        return err_field_add(err, field, "must be %ld..%ld characters", min, max);
    return 0;
}

char *text_utf8_repair(arena_t *a, const char *s)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    char *out = arena_alloc(a, strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        size_t n = text_utf8_seq(p, &cp);
        if (n == 0) {
            memcpy(o, replacement, 3);
            o += 3;
            p++;
        } else {
            memcpy(o, p, n);
            o += n;
            p += n;
        }
    }
    *o = '\0';
    return out;
}

char *text_ascii_lower(arena_t *a, const char *s)
{
    char *out = arena_strdup(a, s);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return out;
}

static bool text_ascii_blank(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

char *text_email_canon(arena_t *a, const char *s)
{
    while (text_ascii_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && text_ascii_blank(s[n - 1]))
        n--;
    return text_ascii_lower(a, arena_strndup(a, s, n));
}

char *text_base64url_encode(arena_t *a, const void *in, size_t n)
{
    const unsigned char *b = in;
    char *out = arena_alloc(a, (n + 2) / 3 * 4 + 1), *p = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < n)
            v |= b[i + 2];
        /* A last group of 1 or 2 bytes needs 2 or 3 characters, unpadded. */
        size_t chars = n - i >= 3 ? 4 : n - i + 1;
        for (size_t k = 0; k < chars; k++)
            *p++ = text_b64[(v >> (18 - 6 * k)) & 0x3f];
    }
    *p = '\0';
    return out;
}

/* The 6-bit value of base64url character c, or -1. */
static int text_b64_value(char c)
{
    const char *hit = c ? strchr(text_b64, c) : NULL;
    return hit ? (int)(hit - text_b64) : -1;
}

int text_base64url_decode(const char *in, void *out, size_t cap, size_t *n_out)
{
    unsigned char *o = out;
    size_t n = strlen(in), len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0), k = 0;
    if (n % 4 == 1 || len >= cap)
        return ERR_INVALID;
    uint32_t bits = 0;
    int n_bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = text_b64_value(in[i]);
        if (v < 0)
            return ERR_INVALID;
        bits = bits << 6 | (uint32_t)v;
        if ((n_bits += 6) >= 8) {
            n_bits -= 8;
            o[k++] = (unsigned char)(bits >> n_bits);
            bits &= (1u << n_bits) - 1;
        }
    }
    /* The bits left over pad the last character; the encoder writes them as zero. */
    if (bits != 0)
        return ERR_INVALID;
    o[k] = '\0';
    if (n_out)
        *n_out = k;
    return 0;
}

unsigned text_mask_bits(char *const *mask, size_t n, const text_mask_name_t *names, size_t n_names,
                        err_t *err)
{
    unsigned bits = 0;
    if (n == 0)
        err_field_add(err, "update_mask", "must name at least one field");
    for (size_t i = 0; i < n; i++) {
        unsigned bit = 0;
        for (size_t k = 0; k < n_names && !bit; k++)
            if (strcmp(mask[i], names[k].name) == 0)
                bit = names[k].bit;
        if (!bit)
            err_field_add(err, "update_mask", "unknown field \"%.40s\"", mask[i]);
        bits |= bit;
    }
    return bits;
}
