/*
 * forwarded: who the client is behind trusted proxies.
 *
 * Rate limits and logs key on the client's address. Without configuration that is
 * the TCP peer, and Forwarded / X-Forwarded-For are ignored: a client could write
 * anything there. With TRUSTED_PROXIES (a comma-separated list of addresses or
 * CIDRs, e.g. "10.0.0.0/8, 192.168.1.7, fd00::/8"), a request whose peer is in the
 * list is read through its forwarding header: Forwarded (RFC 7239, the for=
 * parameters) when present, else X-Forwarded-For. The hops are walked from the
 * right (the nearest proxy's entry) and the first address not in the list is the
 * client; entries to its left were written by the client and are not read. An
 * unreadable entry ("unknown", an obfuscated name, garbage) ends the walk at the
 * last trusted hop; when every hop is trusted, the leftmost one is the client.
 */
#ifndef GATEWAY_FORWARDED_H
#define GATEWAY_FORWARDED_H

#include <netinet/in.h>
#include <stdbool.h>

#include "common/err.h"

#define FORWARDED_ADDR_MAX INET6_ADDRSTRLEN

typedef struct forwarded_trust forwarded_trust_t;

/* forwarded_trust_parse: the list (may be empty: nobody is trusted). Owned; NULL
 * with ERR_INVALID naming the bad entry. */
forwarded_trust_t *forwarded_trust_parse(const char *list, err_t *err);
void forwarded_trust_free(forwarded_trust_t *t);

/* forwarded_trusts: true when `addr` (text) is in the list. */
bool forwarded_trusts(const forwarded_trust_t *t, const char *addr);

/* forwarded_client: the client's address into out, as described above. peer is the
 * TCP peer's address (text); forwarded and xff the headers (NULL when absent). */
void forwarded_client(const forwarded_trust_t *t, const char *peer, const char *forwarded,
                      const char *xff, char out[FORWARDED_ADDR_MAX]);

#endif
