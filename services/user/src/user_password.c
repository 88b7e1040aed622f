/*
 * user_password: argon2id hashing and verification (user_password.h).
 */
#include "common/clock.h"
#include "user_password.h"

#include <argon2.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define USER_PASSWORD_SALT_LEN 16
#define USER_PASSWORD_TAG_LEN  32
#define USER_PASSWORD_MAX_KIB  (UINT32_C(4) * 1024 * 1024) /* 4 GiB */

struct user_password {
    uint32_t memory_kib;
    uint32_t iterations;
    int concurrency;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    int running;
    char dummy[USER_PASSWORD_HASH_MAX];
};

/* Fills buf with n random bytes from the kernel; -1 if it cannot. */
static int user_password_random(void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom((char *)buf + got, n - got, 0);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r > 0)
            got += (size_t)r;
    }
    return 0;
}

/* Takes one of the `concurrency` slots, waiting at most timeout_ms. */
static int user_password_acquire(user_password_t *pw, int64_t timeout_ms, err_t *err)
{
    /* Past a day is "no limit": keeps the timespec arithmetic far from overflow. */
    const int64_t day_ms = INT64_C(86400000);
    bool forever = timeout_ms >= day_ms;
    struct timespec until = clock_mono_deadline(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&pw->mu);
    while (pw->running >= pw->concurrency && rc == 0) {
        if (forever)
            pthread_cond_wait(&pw->cv, &pw->mu);
        else if (pthread_cond_timedwait(&pw->cv, &pw->mu, &until) == ETIMEDOUT)
            rc = err_set_client(err, ERR_TIMEOUT, "deadline exceeded waiting to hash a password");
    }
    if (rc == 0)
        pw->running++;
    pthread_mutex_unlock(&pw->mu);
    return rc;
}

static void user_password_release(user_password_t *pw)
{
    pthread_mutex_lock(&pw->mu);
    pw->running--;
    pthread_cond_signal(&pw->cv);
    pthread_mutex_unlock(&pw->mu);
}

/* The hash itself, without the concurrency limit. */
static int user_password_compute(const user_password_t *pw, const void *password, size_t len,
                                 char out[USER_PASSWORD_HASH_MAX], err_t *err)
{
    uint8_t salt[USER_PASSWORD_SALT_LEN];
    if (user_password_random(salt, sizeof(salt)) != 0)
        return err_set(err, ERR_INTERNAL, "getrandom failed: %s", strerror(errno));
    int rc =
        argon2id_hash_encoded(pw->iterations, pw->memory_kib, 1, password, len, salt, sizeof(salt),
                              USER_PASSWORD_TAG_LEN, out, USER_PASSWORD_HASH_MAX);
    if (rc != ARGON2_OK)
        return err_set(err, ERR_INTERNAL, "argon2id hash failed: %s", argon2_error_message(rc));
    return 0;
}

user_password_t *user_password_new(const user_password_opts_t *o, err_t *err)
{
    if (o->memory_kib < USER_PASSWORD_MIN_MEMORY_KIB || o->memory_kib > USER_PASSWORD_MAX_KIB ||
        o->iterations < USER_PASSWORD_MIN_ITERATIONS || o->concurrency < 1) {
        err_set(err, ERR_INVALID, "argon2id parameters below m=%u KiB, t=%u, or no concurrency",
                (unsigned)USER_PASSWORD_MIN_MEMORY_KIB, (unsigned)USER_PASSWORD_MIN_ITERATIONS);
        return NULL;
    }
    user_password_t *pw = calloc(1, sizeof(*pw));
    if (!pw)
        abort();
    pw->memory_kib = o->memory_kib;
    pw->iterations = o->iterations;
    pw->concurrency = o->concurrency;
    pthread_mutex_init(&pw->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pw->cv, &attr);
    pthread_condattr_destroy(&attr);

    /* The dummy: the hash of 32 random bytes nobody knows, with our parameters. */
    uint8_t secret[32];
    if (user_password_random(secret, sizeof(secret)) != 0) {
        err_set(err, ERR_INTERNAL, "getrandom failed: %s", strerror(errno));
        goto fail;
    }
    int rc = user_password_compute(pw, secret, sizeof(secret), pw->dummy, err);
    explicit_bzero(secret, sizeof(secret));
    if (rc != 0)
        goto fail;
    return pw;
fail:
    user_password_free(pw);
    return NULL;
}

void user_password_free(user_password_t *pw)
{
    if (!pw)
        return;
    pthread_cond_destroy(&pw->cv);
    pthread_mutex_destroy(&pw->mu);
    explicit_bzero(pw->dummy, sizeof(pw->dummy));
    free(pw);
}

int user_password_hash(user_password_t *pw, const char *password, int64_t timeout_ms,
                       char out[USER_PASSWORD_HASH_MAX], err_t *err)
{
    if (user_password_acquire(pw, timeout_ms, err) != 0)
        return err->code;
    int rc = user_password_compute(pw, password, strlen(password), out, err);
    user_password_release(pw);
    return rc;
}

int user_password_verify(user_password_t *pw, const char *encoded, const char *password,
                         int64_t timeout_ms, err_t *err)
{
    if (user_password_acquire(pw, timeout_ms, err) != 0)
        return err->code;
    /* The dummy runs the same computation; its outcome is ignored. */
    int rc = argon2id_verify(encoded ? encoded : pw->dummy, password, strlen(password));
    user_password_release(pw);
    if (encoded && rc == ARGON2_OK)
        return 0;
    if (!encoded || rc == ARGON2_VERIFY_MISMATCH)
        return err_set_client(err, ERR_UNAUTHENTICATED, USER_PASSWORD_MISMATCH);
    return err_set(err, ERR_INTERNAL, "stored password hash unusable: %s",
                   argon2_error_message(rc));
}
