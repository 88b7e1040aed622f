/*
 * stack_env: the test stack's secrets as its environment names them (deploy/local/
 * stack.sh env): a setting NAME_FILE holds the path of a file holding the secret
 * (REDIS_PASSWORD_FILE, REDIS_ADMIN_PASSWORD_FILE). Header-only, as check_util.h.
 */
#ifndef TESTS_STACK_ENV_H
#define TESTS_STACK_ENV_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* stack_env_secret: the first line of the file named by the environment variable
 * file_var (malloc'd, the caller frees it); fails the test when it is unset or
 * unreadable. */
static inline char *stack_env_secret(const char *file_var)
{
    const char *path = getenv(file_var);
    ck_assert_msg(path != NULL && *path != '\0', "%s is not set: run with the test stack's env",
                  file_var);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: cannot open %s", file_var, path);
    char line[512] = "";
    char *got = fgets(line, sizeof(line), f);
    fclose(f);
    ck_assert_msg(got != NULL, "%s: %s is empty", file_var, path);
    line[strcspn(line, "\r\n")] = '\0';
    char *s = strdup(line);
    ck_assert_ptr_nonnull(s);
    return s;
}

#endif
