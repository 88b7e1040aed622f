/*
 * rpc tls: mutual TLS and the x-user-* gate of common/rpc (docs/trust.md) with real
 * certificates made by deploy/pki.sh in a temporary directory: the fleet's CA with
 * gateway, order-svc and user-svc, and a second CA with a certificate named gateway.
 * The EchoService server holds user-svc's certificate. Clients: our C channel, and
 * Debian's python3-grpcio (rpc_client.py "tls") for a client without a certificate
 * and an external client with the gateway's.
 *
 * Runs with CK_NOFORK: gRPC does not survive fork() once started (grpc/grpc#14055).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_util.h"
#include "rpc_echo.h"
#include "shop/test/v1/echo_service.pb-c.h"

#define TEST_TIMEOUT_S 60
/* A refused handshake is a peer never reached: the call waits for it until here. */
#define REFUSED_TIMEOUT_MS 1500

static const ProtobufCServiceDescriptor *const echo_svc = &shop__test__v1__echo_service__descriptor;
static const rpc_metadata_t user_md[] = {{"x-user-id", "user-1"}, {"x-user-role", "customer"}};

static char pki[64] = "/tmp/rpc-tls-XXXXXX"; /* the fleet's CA; pki/other: another CA */
static char other[96];

static echo_ctx_t ctx;
static rpc_server_t *srv;
static arena_t *arena;

/* The identity `name` of the PKI in dir, loaded as a program loads it. */
static rpc_tls_t *identity(const char *dir, const char *name)
{
    char ca[128], crt[128], key[128];
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    err_t err = ERR_INIT;
    rpc_tls_t *t = rpc_tls_load(ca, crt, key, &err);
    ck_assert_msg(t != NULL, "rpc_tls_load(%s): %s", name, err.msg);
    return t;
}

static rpc_server_t *tls_server(const char *user_callers)
{
    rpc_tls_t *t = identity(pki, "user-svc");
    rpc_server_t *s = echo_server_start_opts(&(rpc_server_opts_t){.addr = "127.0.0.1:0",
                                                                  .name = "echo-tls",
                                                                  .workers = 2,
                                                                  .tls = t,
                                                                  .user_callers = user_callers},
                                             &ctx);
    rpc_tls_free(t); /* the server keeps copies */
    return s;
}

/* A channel to srv: TLS as `name` of dir, or plaintext when dir is NULL; `list`
 * names the server twice ("127.0.0.1:p,localhost:p"), as a fixed address list. */
static rpc_channel_t *channel(const char *dir, const char *name, bool list)
{
    char target[64];
    int port = rpc_server_port(srv);
    if (list)
        snprintf(target, sizeof(target), "127.0.0.1:%d,127.0.0.1:%d", port, port);
    else
        snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    rpc_tls_t *t = dir != NULL ? identity(dir, name) : NULL;
    err_t err = ERR_INIT;
    rpc_channel_t *c = rpc_channel_new(target, &(rpc_channel_opts_t){.tls = t}, &err);
    rpc_tls_free(t);
    ck_assert_msg(c != NULL, "rpc_channel_new: %s", err.msg);
    return c;
}

static int echo(rpc_channel_t *c, const rpc_metadata_t *md, size_t n_md, int64_t timeout_ms,
                Shop__Test__V1__EchoResponse **resp, err_t *err)
{
    Shop__Test__V1__EchoRequest req = SHOP__TEST__V1__ECHO_REQUEST__INIT;
    req.message = "hi";
    return rpc_channel_call(c, echo_svc, "Echo", &req.base, arena, (ProtobufCMessage **)resp, md,
                            n_md, timeout_ms, err);
}

static void setup(void)
{
    memset(&ctx, 0, sizeof(ctx));
    ctx.instance = "echo-tls";
    srv = tls_server(NULL);
    arena = arena_new(0);
}

static void teardown(void)
{
    arena_free(arena);
    rpc_server_free(srv);
}

START_TEST(test_gateway_certificate_speaks_for_a_user)
{
    rpc_channel_t *c = channel(pki, "gateway", false);
    Shop__Test__V1__EchoResponse *resp;
    err_t err = ERR_INIT;
    ck_assert_msg(echo(c, user_md, 2, 0, &resp, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(resp->user_id, "user-1");
    ck_assert_str_eq(resp->user_role, "customer");
    rpc_channel_free(c);
}
END_TEST

START_TEST(test_x_user_from_another_fleet_program_is_permission_denied)
{
    rpc_channel_t *c = channel(pki, "order-svc", false);
    Shop__Test__V1__EchoResponse *resp;
    err_t err = ERR_INIT;
    /* Without x-user-* a fleet program is served (order-svc → product-svc). */
    ck_assert_msg(echo(c, NULL, 0, 0, &resp, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(loaded(&ctx.echo_calls), 1);
    /* With either key it is refused before the handler runs. */
    for (size_t i = 0; i < 2; i++) {
        err_clear(&err);
        ck_assert_int_eq(echo(c, &user_md[i], 1, 0, &resp, &err), ERR_PERMISSION);
        ck_assert_msg(strstr(err.msg, "order-svc") != NULL, "message: %s", err.msg);
        ck_assert_msg(strstr(err.msg, "x-user") != NULL, "message: %s", err.msg);
    }
    ck_assert_int_eq(loaded(&ctx.echo_calls), 1);
    rpc_channel_free(c);
}
END_TEST

START_TEST(test_configured_user_caller_is_believed)
{
    rpc_server_free(srv);
    srv = tls_server("gateway,order-svc");
    rpc_channel_t *c = channel(pki, "order-svc", false);
    Shop__Test__V1__EchoResponse *resp;
    err_t err = ERR_INIT;
    ck_assert_msg(echo(c, user_md, 2, 0, &resp, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(resp->user_id, "user-1");
    rpc_channel_free(c);
    /* ... and only the callers named: the list replaces the default. */
    rpc_server_free(srv);
    srv = tls_server("order-svc");
    c = channel(pki, "gateway", false);
    err_clear(&err);
    ck_assert_int_eq(echo(c, user_md, 2, 0, &resp, &err), ERR_PERMISSION);
    rpc_channel_free(c);
}
END_TEST

START_TEST(test_certificate_of_another_ca_is_refused)
{
    rpc_channel_t *c = channel(other, "gateway", false);
    Shop__Test__V1__EchoResponse *resp;
    err_t err = ERR_INIT;
    ck_assert_int_eq(echo(c, user_md, 2, REFUSED_TIMEOUT_MS, &resp, &err), ERR_UNAVAILABLE);
    ck_assert_int_eq(loaded(&ctx.echo_calls), 0);
    rpc_channel_free(c);
}
END_TEST

START_TEST(test_plaintext_client_is_refused)
{
    rpc_channel_t *c = channel(NULL, NULL, false);
    Shop__Test__V1__EchoResponse *resp;
    err_t err = ERR_INIT;
    ck_assert_int_eq(echo(c, NULL, 0, REFUSED_TIMEOUT_MS, &resp, &err), ERR_UNAVAILABLE);
    ck_assert_int_eq(loaded(&ctx.echo_calls), 0);
    rpc_channel_free(c);
}
END_TEST

START_TEST(test_address_list_checks_the_first_host_name)
{
    rpc_channel_t *c = channel(pki, "gateway", true);
    Shop__Test__V1__EchoResponse *resp;
    err_t err = ERR_INIT;
    ck_assert_msg(echo(c, user_md, 2, 0, &resp, &err) == 0, "%s", err.msg);
    rpc_channel_free(c);
}
END_TEST

START_TEST(test_python_grpcio_clients)
{
    char port[16], out[4096];
    snprintf(port, sizeof(port), "%d", rpc_server_port(srv));
    const char *args[] = {port, pki, other, NULL};
    int status = rpc_py_run(rpc_server_port(srv), "tls", args, out, sizeof(out));
    ck_assert_msg(status == 0 && strstr(out, "PASS tls") != NULL, "rpc_client.py tls: %d\n%s",
                  status, out);
}
END_TEST

/* ------------------------------------------------------ the settings ---- */

static void tls_cfg_expect(const rpc_tls_cfg_t *cfg, const char *const *words)
{
    rpc_tls_t *t = (rpc_tls_t *)1;
    err_t err = ERR_INIT;
    ck_assert_int_eq(rpc_tls_setup(cfg, &t, &err), ERR_INVALID);
    ck_assert_ptr_null(t);
    for (size_t i = 0; words[i] != NULL; i++)
        ck_assert_msg(strstr(err.msg, words[i]) != NULL, "no %s in: %s", words[i], err.msg);
}

START_TEST(test_settings_refuse_missing_or_bad_files)
{
    char ca[96], crt[96], key[96], other_key[112], other_crt[112];
    snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
    snprintf(crt, sizeof(crt), "%s/user-svc.crt", pki);
    snprintf(key, sizeof(key), "%s/user-svc.key", pki);
    snprintf(other_key, sizeof(other_key), "%s/gateway.key", other);
    snprintf(other_crt, sizeof(other_crt), "%s/gateway.crt", other);
    /* Nothing set, no opt-out: every variable is named, and the way out. */
    tls_cfg_expect(
        &(rpc_tls_cfg_t){.ca_file = "", .cert_file = "", .key_file = ""},
        (const char *[]){"TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "GRPC_PLAINTEXT", NULL});
    tls_cfg_expect(&(rpc_tls_cfg_t){.ca_file = ca, .cert_file = crt, .key_file = ""},
                   (const char *[]){"TLS_KEY_FILE", NULL});
    tls_cfg_expect(
        &(rpc_tls_cfg_t){.ca_file = "/nonexistent/ca.crt", .cert_file = crt, .key_file = key},
        (const char *[]){"TLS_CA_FILE", "/nonexistent/ca.crt", NULL});
    /* A file that is not PEM, a key of another certificate, another CA's certificate. */
    tls_cfg_expect(&(rpc_tls_cfg_t){.ca_file = key, .cert_file = crt, .key_file = key},
                   (const char *[]){"TLS_CA_FILE", NULL});
    tls_cfg_expect(&(rpc_tls_cfg_t){.ca_file = ca, .cert_file = crt, .key_file = other_key},
                   (const char *[]){"TLS_KEY_FILE", NULL});
    tls_cfg_expect(&(rpc_tls_cfg_t){.ca_file = ca, .cert_file = other_crt, .key_file = other_key},
                   (const char *[]){"TLS_CERT_FILE", "TLS_CA_FILE", NULL});
    /* The opt-out: no TLS, no error. */
    rpc_tls_t *t = (rpc_tls_t *)1;
    err_t err = ERR_INIT;
    ck_assert_int_eq(
        rpc_tls_setup(
            &(rpc_tls_cfg_t){.ca_file = "", .cert_file = "", .key_file = "", .plaintext = true}, &t,
            &err),
        0);
    ck_assert_ptr_null(t);
    /* The good files: the identity is the certificate's CN. */
    ck_assert_int_eq(
        rpc_tls_setup(&(rpc_tls_cfg_t){.ca_file = ca, .cert_file = crt, .key_file = key}, &t, &err),
        0);
    ck_assert_str_eq(t->name, "user-svc");
    rpc_tls_free(t);
    ck_assert_int_eq(rpc_user_callers_check("gateway,order-svc", &err), 0);
    ck_assert_int_eq(rpc_user_callers_check("gateway,", &err), ERR_INVALID);
    ck_assert_int_eq(rpc_user_callers_check("gate way", &err), ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "RPC_USER_CALLERS"));
}
END_TEST

static void pki_make(void)
{
    ck_assert_ptr_nonnull(mkdtemp(pki));
    snprintf(other, sizeof(other), "%s/other", pki);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "set -e; for n in gateway order-svc user-svc; do '%s' '%s' cert $n; done; "
             "'%s' '%s' cert gateway",
             PKI_SH, pki, PKI_SH, other);
    ck_assert_msg(system(cmd) == 0, "pki.sh failed: %s", cmd);
}

static void pki_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", pki);
}

static Suite *rpc_tls_suite(void)
{
    Suite *s = suite_create("rpc_tls");
    TCase *tc = check_case(s, "mtls", TEST_TIMEOUT_S);
    tcase_add_unchecked_fixture(tc, pki_make, pki_remove);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_gateway_certificate_speaks_for_a_user);
    tcase_add_test(tc, test_x_user_from_another_fleet_program_is_permission_denied);
    tcase_add_test(tc, test_configured_user_caller_is_believed);
    tcase_add_test(tc, test_certificate_of_another_ca_is_refused);
    tcase_add_test(tc, test_plaintext_client_is_refused);
    tcase_add_test(tc, test_address_list_checks_the_first_host_name);
    tcase_add_test(tc, test_python_grpcio_clients);
    tcase_add_test(tc, test_settings_refuse_missing_or_bad_files);
    return s;
}

int main(void)
{
    return check_run(rpc_tls_suite(), CK_NOFORK);
}
