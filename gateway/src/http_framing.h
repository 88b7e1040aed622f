/*
 * http_framing: what libmicrohttpd 0.9.75 lets through and a front proxy might
 * read differently, refused before a request reaches routing (RFC 9112 §6.1, §6.3).
 *
 *   - Content-Length together with Transfer-Encoding (a smuggling vector);
 *   - Content-Length sent twice, or not a decimal number;
 *   - Transfer-Encoding sent twice, or whose codings are not exactly "chunked" (the
 *     only coding the gateway reads; anything else leaves the body's end unknown);
 *   - a NUL byte in the request line, a header name or a header value, raw or as
 *     %00 in the target: MHD cuts such strings at the NUL, so the gateway would
 *     act on a prefix of what a proxy saw;
 *   - a request target over HTTP_FRAMING_URI_MAX bytes (414) or a request head
 *     over HTTP_FRAMING_HEAD_MAX bytes (431), below MHD's own limits, so these
 *     answers carry the gateway's headers and problem+json body.
 *
 * MHD parses the request head in place in its read buffer and cuts a line where
 * a string ends; a string that ends before the next one begins (anything but
 * blanks or MHD's own terminators between them) held a NUL. That is how the raw
 * NUL checks see what the API's C strings hide; tests/e2e/gateway cover each case,
 * so an MHD that parses differently fails them rather than passing silently.
 */
#ifndef GATEWAY_HTTP_FRAMING_H
#define GATEWAY_HTTP_FRAMING_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTP_FRAMING_URI_MAX  8192
#define HTTP_FRAMING_HEAD_MAX 16384
/* MHD's per-connection memory: well above the limits above, so that MHD's own
 * answers (HTML, no request id) are left for heads too large to parse at all. */
#define HTTP_FRAMING_MHD_MEMORY (64 * 1024)

/* The request line as MHD parsed it: the method, the target before unescaping
 * (from the URI log callback) and the version, all pointing into MHD's buffer. */
typedef struct http_framing_line {
    const char *method;
    const char *raw_uri;
    size_t raw_uri_len; /* strlen(raw_uri) when it was logged (MHD unescapes it in
                           place afterwards) */
    bool pct_nul;       /* the target held %00 (http_framing_pct_nul when logged) */
    const char *version;
} http_framing_line_t;

/* http_framing_pct_nul: true when the request target holds %00. */
bool http_framing_pct_nul(const char *raw_uri);

/* http_framing_check: 0 when the request's framing is acceptable; else the status
 * to answer (400, 414 or 431), with *detail saying why. The connection must then
 * be closed after the answer. Call once, on the first call of the access handler. */
int http_framing_check(struct MHD_Connection *conn, const http_framing_line_t *line,
                       const char **detail);

#endif
