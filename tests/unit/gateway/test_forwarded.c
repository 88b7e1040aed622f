/*
 * forwarded: who the client is behind TRUSTED_PROXIES (issue 14, item 8).
 */
#include <string.h>

#include "check_util.h"
#include "forwarded.h"

static forwarded_trust_t *trust(const char *list)
{
    err_t err = ERR_INIT;
    forwarded_trust_t *t = forwarded_trust_parse(list, &err);
    ck_assert_msg(t != NULL, "%s: %s", list, err.msg);
    return t;
}

static const char *client(const forwarded_trust_t *t, const char *peer, const char *fwd,
                          const char *xff)
{
    static char out[FORWARDED_ADDR_MAX];
    forwarded_client(t, peer, fwd, xff, out);
    return out;
}

START_TEST(test_parse_accepts_addresses_and_cidrs_and_refuses_the_rest)
{
    forwarded_trust_t *t = trust(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1");
    ck_assert(forwarded_trusts(t, "10.255.1.2"));
    ck_assert(!forwarded_trusts(t, "11.0.0.1"));
    ck_assert(forwarded_trusts(t, "192.168.1.7"));
    ck_assert(!forwarded_trusts(t, "192.168.1.8"));
    ck_assert(forwarded_trusts(t, "fd12:3456::1"));
    ck_assert(!forwarded_trusts(t, "fe80::1"));
    ck_assert(forwarded_trusts(t, "::1"));
    ck_assert(!forwarded_trusts(t, "unknown"));
    forwarded_trust_free(t);
    t = trust("");
    ck_assert(!forwarded_trusts(t, "127.0.0.1"));
    forwarded_trust_free(t);
    t = trust("172.16.0.0/12");
    ck_assert(forwarded_trusts(t, "172.31.255.255"));
    ck_assert(!forwarded_trusts(t, "172.32.0.0"));
    forwarded_trust_free(t);

    static const char *const bad[] = {"10.0.0.0/33", "10.0.0.0/",   "10.0.0/8",     "fd00::/129",
                                      "proxy.local", "10.0.0.1/8x", "1.2.3.4, nope"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err_t err = ERR_INIT;
        ck_assert_msg(forwarded_trust_parse(bad[i], &err) == NULL, "%s", bad[i]);
        ck_assert_int_eq(err.code, ERR_INVALID);
        ck_assert_ptr_nonnull(strstr(err.msg, "TRUSTED_PROXIES"));
    }
}
END_TEST

START_TEST(test_untrusted_peers_headers_are_ignored)
{
    forwarded_trust_t *t = trust("");
    ck_assert_str_eq(client(t, "203.0.113.9", NULL, "1.1.1.1"), "203.0.113.9");
    ck_assert_str_eq(client(t, "203.0.113.9", "for=1.1.1.1", NULL), "203.0.113.9");
    forwarded_trust_free(t);
    t = trust("10.0.0.1");
    ck_assert_str_eq(client(t, "10.0.0.2", NULL, "1.1.1.1"), "10.0.0.2");
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, NULL), "10.0.0.1");
    forwarded_trust_free(t);
}
END_TEST

START_TEST(test_the_rightmost_untrusted_hop_is_the_client)
{
    forwarded_trust_t *t = trust("10.0.0.0/8");
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "1.1.1.1"), "1.1.1.1");
    /* What the client wrote itself, left of its own address, is not read. */
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "9.9.9.9, 1.1.1.1"), "1.1.1.1");
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "9.9.9.9, 1.1.1.1, 10.2.3.4"), "1.1.1.1");
    /* Every hop trusted: the leftmost. */
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "10.9.9.9, 10.2.3.4"), "10.9.9.9");
    /* Garbage ends the walk at the last trusted hop. */
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "1.1.1.1, garbage, 10.2.3.4"), "10.2.3.4");
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "nope"), "10.0.0.1");
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "1.1.1.1:5555"), "1.1.1.1");
    ck_assert_str_eq(client(t, "10.0.0.1", NULL, "2001:db8::7"), "2001:db8::7");
    /* Forwarded (RFC 7239) wins over X-Forwarded-For. */
    ck_assert_str_eq(client(t, "10.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43", "5.5.5.5"),
                     "192.0.2.60");
    ck_assert_str_eq(client(t, "10.0.0.1", "for=9.9.9.9, For=\"[2001:db8:cafe::17]:4711\"", NULL),
                     "2001:db8:cafe::17");
    ck_assert_str_eq(client(t, "10.0.0.1", "for=unknown", NULL), "10.0.0.1");
    ck_assert_str_eq(client(t, "10.0.0.1", "proto=https", NULL), "10.0.0.1");
    forwarded_trust_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("forwarded");
    TCase *tc = check_case(s, "forwarded", 10);
    tcase_add_test(tc, test_parse_accepts_addresses_and_cidrs_and_refuses_the_rest);
    tcase_add_test(tc, test_untrusted_peers_headers_are_ignored);
    tcase_add_test(tc, test_the_rightmost_untrusted_hop_is_the_client);
    return check_run(s, CK_FORK_GETENV);
}
