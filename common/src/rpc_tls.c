/*
 * rpc_tls: a program's mutual TLS material, read once at start-up and checked with
 * OpenSSL before gRPC sees it (rpc.h). gRPC itself takes any text here and parses it
 * only when it binds or connects, far from the setting; a wrong path, a key of
 * another certificate or another CA's certificate is caught here with the variable
 * named instead.
 */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/text.h"

#define RPC_TLS_FILE_MAX (256 * 1024)
#define RPC_TLS_CN_MAX   256

const cfg_entry_t rpc_tls_cfg_table[] = {
    {"TLS_CA_FILE", CFG_STR, 0, 1024, "", offsetof(rpc_tls_cfg_t, ca_file),
     "PEM file of the fleet's CA: gRPC peers must present a certificate it signed"},
    {"TLS_CERT_FILE", CFG_STR, 0, 1024, "", offsetof(rpc_tls_cfg_t, cert_file),
     "PEM certificate of this program (CN = program name), for its gRPC server and channels"},
    {"TLS_KEY_FILE", CFG_STR, 0, 1024, "", offsetof(rpc_tls_cfg_t, key_file),
     "PEM private key of TLS_CERT_FILE"},
    {"GRPC_PLAINTEXT", CFG_BOOL, 0, 0, "false", offsetof(rpc_tls_cfg_t, plaintext),
     "true: gRPC without TLS (any caller may speak for any user); needed when the TLS "
     "files are not set"},
};
const size_t rpc_tls_cfg_n = sizeof(rpc_tls_cfg_table) / sizeof(rpc_tls_cfg_table[0]);

/* The file's text, NUL-terminated (malloc'd), or NULL with err naming var. */
static char *rpc_tls_read(const char *var, const char *path, err_t *err)
{
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        err_set(err, ERR_INVALID, "%s: cannot open %s: %s", var, path, strerror(errno));
        return NULL;
    }
    buf = common__xmalloc(RPC_TLS_FILE_MAX + 1);
    size_t n = fread(buf, 1, RPC_TLS_FILE_MAX + 1, f);
    if (ferror(f) || n == 0 || n > RPC_TLS_FILE_MAX) {
        err_set(err, ERR_INVALID, "%s: %s is %s", var, path,
                ferror(f) ? "unreadable"
                : n == 0  ? "empty"
                          : "too large");
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = '\0';
out:
    fclose(f);
    return buf;
}

static X509 *rpc_tls_x509(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return x;
}

/* The checks gRPC's handshake would make later, made now: parseable, signed by the
 * CA (and in date), and the key matching the certificate. The CN goes to cn. */
static int rpc_tls_check(const rpc_tls_t *t, char cn[RPC_TLS_CN_MAX], err_t *err)
{
    X509 *ca = NULL, *cert = NULL;
    EVP_PKEY *key = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    BIO *bio = NULL;
    int rc = 0;
    if ((ca = rpc_tls_x509(t->ca_pem)) == NULL) {
        rc = err_set(err, ERR_INVALID, "TLS_CA_FILE: not a PEM certificate");
        goto out;
    }
    if ((cert = rpc_tls_x509(t->cert_pem)) == NULL) {
        rc = err_set(err, ERR_INVALID, "TLS_CERT_FILE: not a PEM certificate");
        goto out;
    }
    bio = BIO_new_mem_buf(t->key_pem, -1);
    if (bio == NULL || (key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL) {
        rc = err_set(err, ERR_INVALID, "TLS_KEY_FILE: not a PEM private key");
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        rc = err_set(err, ERR_INVALID, "TLS_KEY_FILE: not the key of TLS_CERT_FILE's certificate");
        goto out;
    }
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    if (store == NULL || ctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
        X509_STORE_CTX_init(ctx, store, cert, NULL) != 1) {
        rc = err_set(err, ERR_INTERNAL, "TLS: cannot check the certificate (out of memory?)");
        goto out;
    }
    if (X509_verify_cert(ctx) != 1) {
        rc = err_set(err, ERR_INVALID, "TLS_CERT_FILE: not valid under TLS_CA_FILE: %s",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        goto out;
    }
    cn[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, RPC_TLS_CN_MAX);
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    BIO_free(bio);
    EVP_PKEY_free(key);
    X509_free(cert);
    X509_free(ca);
    return rc;
}

rpc_tls_t *rpc_tls_load(const char *ca_file, const char *cert_file, const char *key_file,
                        err_t *err)
{
    char cn[RPC_TLS_CN_MAX];
    /* Often the process's first use of OpenSSL: keep its state to the end of the
     * process, as rpc__grpc_init does (rpc_codec.c says why). */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    rpc_tls_t *t = common__xcalloc(1, sizeof(*t));
    if ((t->ca_pem = rpc_tls_read("TLS_CA_FILE", ca_file, err)) == NULL ||
        (t->cert_pem = rpc_tls_read("TLS_CERT_FILE", cert_file, err)) == NULL ||
        (t->key_pem = rpc_tls_read("TLS_KEY_FILE", key_file, err)) == NULL ||
        rpc_tls_check(t, cn, err) < 0) {
        rpc_tls_free(t);
        return NULL;
    }
    t->name = common__xstrdup(cn);
    return t;
}

void rpc_tls_free(rpc_tls_t *tls)
{
    if (tls == NULL)
        return;
    if (tls->key_pem != NULL)
        OPENSSL_cleanse((char *)tls->key_pem, strlen(tls->key_pem));
    free((char *)tls->ca_pem);
    free((char *)tls->cert_pem);
    free((char *)tls->key_pem);
    free((char *)tls->name);
    free(tls);
}

int rpc_tls_setup(const rpc_tls_cfg_t *cfg, rpc_tls_t **out, err_t *err)
{
    *out = NULL;
    if (cfg->plaintext) {
        LOG_WARN("GRPC_PLAINTEXT=true: gRPC without TLS, any caller may speak for any user");
        return 0;
    }
    const char *missing[3];
    size_t n = 0;
    if (cfg->ca_file[0] == '\0')
        missing[n++] = "TLS_CA_FILE";
    if (cfg->cert_file[0] == '\0')
        missing[n++] = "TLS_CERT_FILE";
    if (cfg->key_file[0] == '\0')
        missing[n++] = "TLS_KEY_FILE";
    if (n == 3)
        return err_set(err, ERR_INVALID,
                       "gRPC needs TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE (mutual TLS), or "
                       "GRPC_PLAINTEXT=true to run without TLS");
    if (n > 0)
        return err_set(err, ERR_INVALID, "%s%s%s %s not set: mutual TLS needs all three files",
                       missing[0], n > 1 ? " and " : "", n > 1 ? missing[1] : "",
                       n > 1 ? "are" : "is");
    if ((*out = rpc_tls_load(cfg->ca_file, cfg->cert_file, cfg->key_file, err)) == NULL)
        return err->code;
    LOG_INFO("grpc mutual tls", LOG_STR("identity", (*out)->name), LOG_STR("ca", cfg->ca_file));
    return 0;
}

int rpc_user_callers_check(const char *list, err_t *err)
{
    size_t len = 0;
    for (const char *p = list;; p++) {
        if (*p == ',' || *p == '\0') {
            if (len == 0)
                return err_set(err, ERR_INVALID,
                               "RPC_USER_CALLERS: a comma list of certificate CNs, got \"%s\"",
                               list);
            if (*p == '\0')
                return 0;
            len = 0;
        } else if (text_name_char(*p)) {
            len++;
        } else {
            return err_set(err, ERR_INVALID,
                           "RPC_USER_CALLERS: names are [A-Za-z0-9._-], got \"%s\"", list);
        }
    }
}
