/*
 * http_framing: framing and NUL checks (http_framing.h).
 */
#include "http_framing.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

typedef struct http_framing_scan {
    const char *prev_end; /* where the previous header's value ended (its NUL) */
    int content_lengths, transfer_encodings;
    const char *content_length, *transfer_encoding;
    bool nul;
} http_framing_scan_t;

/* Only blanks or NULs (MHD's terminators) from a to b. */
static bool http_framing_gap_ok(const char *a, const char *b)
{
    if (b < a || b - a > 4096)
        return false;
    for (; a < b; a++)
        if (*a != '\0' && *a != ' ' && *a != '\t' && *a != '\r' && *a != '\n')
            return false;
    return true;
}

static enum MHD_Result http_framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    http_framing_scan_t *s = cls;
    /* A header starts right after the previous one's line; its value right after
     * its name and colon. A NUL cut either string short of where the next begins. */
    if ((s->prev_end != NULL && !http_framing_gap_ok(s->prev_end, key)) ||
        (value != NULL && !http_framing_gap_ok(key + key_size, value))) {
        s->nul = true;
        return MHD_NO;
    }
    if (value == NULL)
        value = "";
    s->prev_end = value + value_size;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        s->content_lengths++;
        s->content_length = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        s->transfer_encodings++;
        s->transfer_encoding = value;
    }
    return MHD_YES;
}

/* The last header's value must end where its line did: at MHD's terminators. */
static bool http_framing_last_ok(const char *end)
{
    return end == NULL || end[1] == '\0' || end[1] == '\n' || end[1] == '\r';
}

static bool http_framing_decimal(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 19 && strspn(s, "0123456789") == n;
}

/* "chunked", alone, in any case, with blanks around it. */
static bool http_framing_chunked_only(const char *te)
{
    while (*te == ' ' || *te == '\t')
        te++;
    size_t n = strlen(te);
    while (n > 0 && (te[n - 1] == ' ' || te[n - 1] == '\t'))
        n--;
    return n == 7 && strncasecmp(te, "chunked", 7) == 0;
}

bool http_framing_pct_nul(const char *raw_uri)
{
    /* %00 decodes to a NUL that MHD would cut the path or a parameter at. */
    for (const char *p = raw_uri; (p = strchr(p, '%')) != NULL; p++)
        if (p[1] == '0' && p[2] == '0')
            return true;
    return false;
}

static bool http_framing_line_ok(const http_framing_line_t *l)
{
    const char *method_end = l->method + strlen(l->method);
    const char *uri_end = l->raw_uri + l->raw_uri_len;
    if (l->pct_nul)
        return false;
    if (!http_framing_gap_ok(method_end, l->raw_uri))
        return false;
    /* HTTP/0.9-style lines have no version; MHD answers those itself. */
    return l->version == NULL || l->version[0] == '\0' || http_framing_gap_ok(uri_end, l->version);
}

int http_framing_check(struct MHD_Connection *conn, const http_framing_line_t *line,
                       const char **detail)
{
    if (line->raw_uri_len > HTTP_FRAMING_URI_MAX) {
        *detail = "the request target is too long";
        return 414;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (ci != NULL && ci->header_size > HTTP_FRAMING_HEAD_MAX) {
        *detail = "the request header fields are too large";
        return 431;
    }
    if (!http_framing_line_ok(line)) {
        *detail = "the request line holds a NUL byte";
        return 400;
    }
    http_framing_scan_t s = {0};
    if (line->version != NULL && line->version[0] != '\0')
        s.prev_end = line->version + strlen(line->version);
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, http_framing_header, &s);
    if (s.nul || !http_framing_last_ok(s.prev_end)) {
        *detail = "a header field holds a NUL byte";
        return 400;
    }
    if (s.content_lengths > 0 && s.transfer_encodings > 0) {
        *detail = "Content-Length and Transfer-Encoding together";
        return 400;
    }
    if (s.content_lengths > 1 ||
        (s.content_lengths == 1 && !http_framing_decimal(s.content_length))) {
        *detail = "one Content-Length, a decimal number, is allowed";
        return 400;
    }
    if (s.transfer_encodings > 1 ||
        (s.transfer_encodings == 1 && !http_framing_chunked_only(s.transfer_encoding))) {
        *detail = "the only Transfer-Encoding accepted is chunked";
        return 400;
    }
    return 0;
}
