/*
 * forwarded: trusted proxy list and forwarding headers (forwarded.h).
 *
 * Addresses are compared as 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * so "10.0.0.0/8" is the prefix ::ffff:10.0.0.0/104.
 */
#include "forwarded.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FORWARDED_TRUST_MAX 64
#define FORWARDED_HOPS_MAX  32

typedef struct forwarded_net {
    unsigned char addr[16];
    int bits;
} forwarded_net_t;

struct forwarded_trust {
    size_t n;
    forwarded_net_t nets[FORWARDED_TRUST_MAX];
};

/* The n bytes at s as an address; *v4 when it was IPv4. */
static bool forwarded_addr(const char *s, size_t n, unsigned char out[16], bool *v4)
{
    char buf[FORWARDED_ADDR_MAX];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET6, buf, out) == 1) {
        *v4 = false;
        return true;
    }
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    *v4 = true;
    return inet_pton(AF_INET, buf, out + 12) == 1;
}

static void forwarded_trim(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

forwarded_trust_t *forwarded_trust_parse(const char *list, err_t *err)
{
    forwarded_trust_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        abort();
    for (const char *p = list ? list : ""; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *e = p;
        forwarded_trim(&e, &n);
        p = comma ? comma + 1 : p + strlen(p);
        if (n == 0)
            continue;
        const char *slash = memchr(e, '/', n);
        size_t alen = slash ? (size_t)(slash - e) : n;
        bool v4 = false;
        forwarded_net_t *net = &t->nets[t->n];
        long bits = -1;
        if (t->n < FORWARDED_TRUST_MAX && forwarded_addr(e, alen, net->addr, &v4)) {
            char *end = NULL;
            bits = slash ? strtol(slash + 1, &end, 10) : (v4 ? 32 : 128);
            if (slash && (end == slash + 1 || end != e + n || bits < 0 || bits > (v4 ? 32 : 128)))
                bits = -1;
        }
        if (bits < 0) {
            err_set(err, ERR_INVALID, "TRUSTED_PROXIES: \"%.*s\" is not an address or CIDR%s",
                    (int)(n > 64 ? 64 : n), e,
                    t->n == FORWARDED_TRUST_MAX ? " (64 entries at most)" : "");
            free(t);
            return NULL;
        }
        net->bits = (int)bits + (v4 ? 96 : 0);
        t->n++;
    }
    return t;
}

void forwarded_trust_free(forwarded_trust_t *t)
{
    free(t);
}

static bool forwarded_in(const forwarded_trust_t *t, const unsigned char a[16])
{
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        const forwarded_net_t *net = &t->nets[i];
        int full = net->bits / 8, rest = net->bits % 8;
        if (memcmp(a, net->addr, (size_t)full) != 0)
            continue;
        if (rest == 0 || ((a[full] ^ net->addr[full]) & (0xff << (8 - rest))) == 0)
            return true;
    }
    return false;
}

bool forwarded_trusts(const forwarded_trust_t *t, const char *addr)
{
    unsigned char a[16];
    bool v4;
    return forwarded_addr(addr, strlen(addr), a, &v4) && forwarded_in(t, a);
}

typedef struct forwarded_hop {
    const char *s;
    size_t n;
} forwarded_hop_t;

/* One hop's node as an address: strips quotes, [brackets] and a :port. */
static bool forwarded_node(forwarded_hop_t h, unsigned char a[16], char out[FORWARDED_ADDR_MAX])
{
    forwarded_trim(&h.s, &h.n);
    if (h.n >= 2 && h.s[0] == '"' && h.s[h.n - 1] == '"')
        h.s++, h.n -= 2;
    if (h.n > 0 && h.s[0] == '[') {
        const char *close = memchr(h.s, ']', h.n);
        if (close == NULL)
            return false;
        h.n = (size_t)(close - h.s - 1);
        h.s++;
    } else {
        const char *colon = memchr(h.s, ':', h.n);
        /* One colon: IPv4 with a port; more: a bare IPv6 address. */
        if (colon != NULL && memchr(colon + 1, ':', h.n - (size_t)(colon - h.s) - 1) == NULL)
            h.n = (size_t)(colon - h.s);
    }
    bool v4;
    if (!forwarded_addr(h.s, h.n, a, &v4))
        return false;
    memcpy(out, h.s, h.n);
    out[h.n] = '\0';
    return true;
}

/* The for= value of one Forwarded element (";"-separated pairs). */
static forwarded_hop_t forwarded_for(const char *s, size_t n)
{
    while (n > 0) {
        const char *semi = memchr(s, ';', n);
        size_t len = semi ? (size_t)(semi - s) : n;
        const char *pair = s;
        size_t plen = len;
        forwarded_trim(&pair, &plen);
        if (plen >= 4 && strncasecmp(pair, "for=", 4) == 0)
            return (forwarded_hop_t){pair + 4, plen - 4};
        if (!semi)
            break;
        s = semi + 1;
        n -= len + 1;
    }
    return (forwarded_hop_t){"", 0};
}

static size_t forwarded_hops(const char *header, bool rfc7239, forwarded_hop_t hops[])
{
    size_t n = 0;
    for (const char *p = header; n < FORWARDED_HOPS_MAX;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        hops[n++] = rfc7239 ? forwarded_for(p, len) : (forwarded_hop_t){p, len};
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

void forwarded_client(const forwarded_trust_t *t, const char *peer, const char *forwarded,
                      const char *xff, char out[FORWARDED_ADDR_MAX])
{
    snprintf(out, FORWARDED_ADDR_MAX, "%s", peer);
    const char *header = forwarded ? forwarded : xff;
    if (header == NULL || !forwarded_trusts(t, peer))
        return;
    forwarded_hop_t hops[FORWARDED_HOPS_MAX];
    size_t n = forwarded_hops(header, forwarded != NULL, hops);
    /* Over FORWARDED_HOPS_MAX hops: only the first ones were kept, and the
     * nearest are what counts; trust none of it. */
    if (n == FORWARDED_HOPS_MAX)
        return;
    for (size_t i = n; i-- > 0;) {
        unsigned char a[16];
        char addr[FORWARDED_ADDR_MAX];
        if (!forwarded_node(hops[i], a, addr))
            return;
        snprintf(out, FORWARDED_ADDR_MAX, "%s", addr);
        if (!forwarded_in(t, a))
            return;
    }
}
