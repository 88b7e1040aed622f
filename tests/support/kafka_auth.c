/*
 * kafka_auth: the tests' Kafka principals (kafka_auth.h).
 */
#include "kafka_auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/kfk.h"

int ka_password(const char *path, char *buf, size_t len)
{
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f)
        return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return n > 0 ? 0 : -1;
}

void ka_admin(void)
{
    const char *user = getenv("KAFKA_ADMIN_USERNAME");
    if (!user || !*user)
        return;
    char pass[1025];
    err_t err = ERR_INIT;
    if (ka_password(getenv("KAFKA_ADMIN_PASSWORD_FILE"), pass, sizeof(pass)) != 0)
        err_set(&err, ERR_INVALID, "KAFKA_ADMIN_PASSWORD_FILE names no readable password");
    else
        kfk_auth_set(
            &(kfk_auth_t){.username = user, .password = pass, .ca_file = getenv("TLS_CA_FILE")},
            &err);
    /* Not ck_assert: helper processes that are no Check test call this too. */
    if (err.code != 0) {
        fprintf(stderr, "kafka_auth: %s\n", err.msg);
        abort();
    }
}

void ka_operator_env(void)
{
    const char *user = getenv("KAFKA_ADMIN_USERNAME");
    const char *pass = getenv("KAFKA_ADMIN_PASSWORD_FILE");
    if (user && *user && pass && *pass) {
        setenv("KAFKA_USERNAME", user, 1);
        setenv("KAFKA_PASSWORD_FILE", pass, 1);
        unsetenv("KAFKA_PASSWORD");
    }
}

int ka_service_env(const char *program, char *user, size_t user_len, char *pass, size_t pass_len)
{
    /* order-svc -> ORDER */
    char svc[64], name[96];
    size_t n = strcspn(program, "-");
    if (n >= sizeof(svc))
        n = sizeof(svc) - 1;
    for (size_t i = 0; i < n; i++)
        svc[i] = (char)toupper((unsigned char)program[i]);
    svc[n] = '\0';
    *user = *pass = '\0';
    snprintf(name, sizeof(name), "KAFKA_%s_USERNAME", svc);
    const char *u = getenv(name);
    snprintf(name, sizeof(name), "KAFKA_%s_PASSWORD_FILE", svc);
    const char *p = getenv(name);
    if (!u || !*u || !p || !*p)
        return -1;
    snprintf(user, user_len, "KAFKA_USERNAME=%s", u);
    snprintf(pass, pass_len, "KAFKA_PASSWORD_FILE=%s", p);
    return 0;
}
