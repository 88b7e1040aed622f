/*
 * user-svc: accounts, credentials, profile, preferences and wallet (docs/architecture.md §3,
 * §4 steps 3 and 9).
 *
 * Everything a service process does — settings, admin HTTP, migrations, the outbox
 * relay, the saga consumer, the gRPC server, the drain on SIGTERM — is svc_main's
 * (common/svc.h); this file describes user-svc and its operator command.
 *
 * Settings beyond the common ones (GRPC_ADDR, ADMIN_ADDR, DATABASE_URL, DB_POOL_SIZE,
 * KAFKA_BROKERS, LOG_LEVEL, SHUTDOWN_GRACE, STARTUP_TIMEOUT):
 *   PASSWORD_HASH_MEMORY_KIB   argon2id memory, KiB (19456..4194304, default 19456)
 *   PASSWORD_HASH_ITERATIONS   argon2id passes (2..64, default 2)
 *   PASSWORD_HASH_CONCURRENCY  hashes computed at once; each holds the memory above
 *                              (1..64, default 2)
 *
 * Command:
 *   user-svc create-admin EMAIL    reads the password from the first line of stdin;
 *   creates an admin with that email and password or, when the email is registered
 *   (case-insensitively), makes that account an admin with this password. Prints the
 *   user id on stdout. Exit status 0 done, 1 database failure, 2 bad usage, email or
 *   password. There is no default admin anywhere; this is the only way to make one.
 */
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"
#include "common/svc.h"
#include "fleet.h"
#include "user.h"
#include "user_repo.h"

extern const db_migration_set_t user_migrations;

/* The longest line read as a password: 128 characters of up to 4 bytes each. */
#define USER_ADMIN_LINE_MAX 512

static const char *const user_topics[] = {USER_TOPIC_INVENTORY, USER_TOPIC_ORDERS};

static user_config_t user_config;

static const cfg_entry_t user_config_table[] = {
    {"PASSWORD_HASH_MEMORY_KIB", CFG_INT, USER_PASSWORD_MIN_MEMORY_KIB, 4194304, "19456",
     offsetof(user_config_t, hash_memory_kib), "argon2id memory cost in KiB"},
    {"PASSWORD_HASH_ITERATIONS", CFG_INT, USER_PASSWORD_MIN_ITERATIONS, 64, "2",
     offsetof(user_config_t, hash_iterations), "argon2id passes"},
    {"PASSWORD_HASH_CONCURRENCY", CFG_INT, 1, 64, "2", offsetof(user_config_t, hash_concurrency),
     "password hashes computed at once (each holds the memory cost)"},
};

static user_password_t *user_passwords_new(const svc_t *s, err_t *err)
{
    const user_config_t *c = svc_config(s);
    user_password_opts_t o = {.memory_kib = (uint32_t)c->hash_memory_kib,
                              .iterations = (uint32_t)c->hash_iterations,
                              .concurrency = (int)c->hash_concurrency};
    return user_password_new(&o, err);
}

static user_ctx_t user_ctx;

static int user_init(svc_t *s, err_t *err)
{
    /* Every argon2id hash mallocs PASSWORD_HASH_MEMORY_KIB (19 MiB) at once. With glibc's
     * dynamic mmap threshold, the first free raises the threshold above that size and
     * later hashes come from the calling thread's arena, which keeps the pages: one
     * resident copy per gRPC worker thread (measured: ~170 MiB RSS after a login burst).
     * A fixed threshold disables the adjustment, so those blocks are always mapped and
     * unmapped, and resident memory falls back after every hash. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    if (!(user_ctx.passwords = user_passwords_new(s, err)))
        return err->code;
    svc_user_set(s, &user_ctx);
    return 0;
}

static void user_fini(svc_t *s)
{
    user_password_free(user_ctx.passwords);
    user_ctx.passwords = NULL;
}

/* Reads the first line of stdin into buf (without its line ending). 0, or -1 when
 * there is no line or it does not fit. */
static int user_read_password(char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, stdin))
        return -1;
    size_t n = strlen(buf);
    bool whole = n > 0 && buf[n - 1] == '\n';
    if (!whole && !feof(stdin))
        return -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return 0;
}

/* The display name of a new admin: the email's local part. */
static const char *user_admin_name(arena_t *a, const char *email)
{
    return arena_strndup(a, email, strcspn(email, "@"));
}

/* create-admin EMAIL, password on stdin. The password buffer is wiped before return. */
static int user_create_admin(svc_t *s, const char *email_arg)
{
    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    char password[USER_ADMIN_LINE_MAX + 2] = "";
    char hash[USER_PASSWORD_HASH_MAX] = "";
    const char *email = NULL, *name = NULL;
    user_password_t *pw = NULL;
    user_row_t row;
    bool created = false;
    int status = 2;
    if (user_read_password(password, sizeof(password)) != 0) {
        fprintf(stderr,
                "user-svc: create-admin: no password on stdin (first line, at most %d "
                "bytes)\n",
                USER_ADMIN_LINE_MAX);
        goto out;
    }
    user_rpc_check_email(a, email_arg, &email, &err);
    user_rpc_check_password(password, &err);
    if (email)
        user_rpc_check_display_name(a, user_admin_name(a, email), &name, &err);
    if (err.code != 0) {
        for (size_t i = 0; i < err.n_fields; i++)
            fprintf(stderr, "user-svc: create-admin: %s %s\n", err.fields[i].field,
                    err.fields[i].description);
        goto out;
    }
    status = 1;
    if (!(pw = user_passwords_new(s, &err)) ||
        user_password_hash(pw, password, INT64_MAX, hash, &err) != 0 ||
        user_repo_make_admin(svc_pool(s), a, email, hash, name, &row, &created, &err) != 0) {
        fprintf(stderr, "user-svc: create-admin: %s\n", err.msg);
        goto out;
    }
    LOG_INFO(created ? "admin created" : "user promoted to admin", LOG_STR("user_id", row.id));
    fprintf(stderr, "user-svc: create-admin: %s %s\n", created ? "created admin" : "promoted user",
            row.id);
    printf("%s\n", row.id);
    fflush(stdout);
    status = 0;
out:
    explicit_bzero(password, sizeof(password));
    explicit_bzero(hash, sizeof(hash));
    user_password_free(pw);
    arena_free(a);
    return status;
}

static int user_create_admin_command(svc_t *s, int argc, char **argv)
{
    (void)argc;
    return user_create_admin(s, argv[1]);
}

static const svc_command_t user_commands[] = {
    {"create-admin", 1, "EMAIL   (password on the first line of stdin)", user_create_admin_command},
};

int main(int argc, char **argv)
{
    const svc_def_t def = {
        .name = "user",
        .grpc_port = FLEET_USER_GRPC_PORT,
        .admin_port = FLEET_USER_ADMIN_PORT,
        .default_db_url = FLEET_USER_DB_URL,
        .service = user_rpc_service,
        .migrations = &user_migrations,
        .topics = user_topics,
        .n_topics = sizeof(user_topics) / sizeof(user_topics[0]),
        .routes = user_saga_routes,
        .n_routes = user_saga_n_routes,
        .config_table = user_config_table,
        .n_config = sizeof(user_config_table) / sizeof(user_config_table[0]),
        .config = &user_config,
        .init = user_init,
        .fini = user_fini,
        .commands = user_commands,
        .n_commands = sizeof(user_commands) / sizeof(user_commands[0]),
    };
    return svc_main(&def, argc, argv);
}
