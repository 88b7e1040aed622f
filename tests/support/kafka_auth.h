/*
 * kafka_auth: the tests' Kafka principals, from the stack's settings (deploy/local/
 * stack.sh env): KAFKA_ADMIN_USERNAME / _PASSWORD_FILE for the tests' own clients
 * (topic administration, producing test events, reading what the services produced),
 * KAFKA_<SVC>_USERNAME / _PASSWORD_FILE for the services a test starts, and
 * TLS_CA_FILE. Without KAFKA_ADMIN_USERNAME (a broker without authentication) the
 * tests' clients speak plaintext.
 */
#ifndef TESTS_KAFKA_AUTH_H
#define TESTS_KAFKA_AUTH_H

#include <stddef.h>

/* ka_admin: makes every Kafka client this process creates from now on the admin
 * (kfk_auth_set). Idempotent; aborts (failing the test) on a bad setting. */
void ka_admin(void);

/* ka_operator_env: sets KAFKA_USERNAME and KAFKA_PASSWORD_FILE in this process's
 * environment to the admin's, for the operator tools a test runs (shopctl), as an
 * operator of the stack would. Services started by svc_proc get their own. */
void ka_operator_env(void);

/* ka_service_env: the KAFKA_USERNAME=, KAFKA_PASSWORD_FILE= settings of the service
 * whose program is `program` ("order-svc": KAFKA_ORDER_USERNAME, ...) into `user` and
 * `pass` ("NAME=value" strings for a child's environment); 0, or -1 when the stack
 * names no principal for it (both then empty). */
int ka_service_env(const char *program, char *user, size_t user_len, char *pass, size_t pass_len);

/* ka_password: the password in the file `path` (one trailing newline dropped) into
 * buf; 0 or -1. */
int ka_password(const char *path, char *buf, size_t len);

#endif
