/*
 * db_listener against the real PostgreSQL: a NOTIFY from another connection wakes the
 * waiter at once, a quiet channel times out, a killed listener connection is reported
 * and re-established. Channels carry random names so parallel runs do not interfere.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_util.h"
#include "common/db.h"
#include "test_db_support.h"

static char channel[TDB_NAME_MAX];

static void setup(void)
{
    tdb_name("tdb_chan", channel);
}

static void notify(const char *chan)
{
    PGconn *pg = tdb_pg(tdb_base_url());
    const char *params[] = {chan};
    PGresult *r = PQexecParams(pg, "SELECT pg_notify($1, 'x')", 1, NULL, params, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(pg);
}

static db_listener_t *listener_on(const char *chan)
{
    err_t err = ERR_INIT;
    db_listener_t *l = db_listener_new(tdb_base_url(), chan, &err);
    ck_assert_msg(l, "%s", err.msg);
    return l;
}

static void *notify_after_100ms(void *arg)
{
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    notify(arg);
    return NULL;
}

START_TEST(test_listener_wakes_on_a_notify_from_another_connection)
{
    db_listener_t *l = listener_on(channel);
    pthread_t th;
    pthread_create(&th, NULL, notify_after_100ms, channel);
    int64_t t0 = tdb_ms();
    int rc = db_listener_wait(l, 10000);
    int64_t took = tdb_ms() - t0;
    pthread_join(th, NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(took >= 50 && took < 1000, "woke after %lld ms", (long long)took);
    db_listener_free(l);
}
END_TEST

START_TEST(test_listener_wait_returns_zero_on_timeout)
{
    db_listener_t *l = listener_on(channel);
    int64_t t0 = tdb_ms();
    ck_assert_int_eq(db_listener_wait(l, 200), 0);
    int64_t took = tdb_ms() - t0;
    ck_assert_msg(took >= 190 && took < 1000, "returned after %lld ms", (long long)took);
    ck_assert_int_eq(db_listener_wait(l, 0), 0);
    db_listener_free(l);
}
END_TEST

START_TEST(test_listener_counts_a_burst_as_one_and_drains_it)
{
    db_listener_t *l = listener_on(channel);
    /* Three notifications (distinct payloads, so PostgreSQL keeps them all) in one
     * transaction, given time to reach the listener's socket before the wait. */
    PGconn *pg = tdb_pg(tdb_base_url());
    const char *params[] = {channel};
    PGresult *r =
        PQexecParams(pg, "SELECT pg_notify($1, 'a'), pg_notify($1, 'b'), pg_notify($1, 'c')", 1,
                     NULL, params, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(pg);
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);

    ck_assert_int_eq(db_listener_wait(l, 5000), 1);
    ck_assert_int_eq(db_listener_wait(l, 100), 0);
    db_listener_free(l);
}
END_TEST

START_TEST(test_listener_ignores_other_channels)
{
    char other[TDB_NAME_MAX];
    tdb_name("tdb_other", other);
    db_listener_t *l = listener_on(channel);
    notify(other);
    ck_assert_int_eq(db_listener_wait(l, 200), 0);
    db_listener_free(l);
}
END_TEST

START_TEST(test_listener_channel_name_is_quoted_exactly)
{
    /* Upper case, a space and a quote: unquoted, LISTEN would fold or fail. */
    char odd[TDB_NAME_MAX];
    snprintf(odd, sizeof(odd), "Tdb \"Q\" %.40s", channel + 4);
    db_listener_t *l = listener_on(odd);
    notify(odd);
    ck_assert_int_eq(db_listener_wait(l, 5000), 1);
    db_listener_free(l);
}
END_TEST

START_TEST(test_listener_rejects_a_bad_channel_name)
{
    err_t err = ERR_INIT;
    ck_assert_ptr_null(db_listener_new(tdb_base_url(), "", &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
    char longname[80];
    memset(longname, 'c', 64);
    longname[64] = '\0';
    ck_assert_ptr_null(db_listener_new(tdb_base_url(), longname, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
}
END_TEST

static int64_t listener_backend_pid(const char *chan)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE query = 'LISTEN \"%s\"'",
             chan);
    PGconn *pg = tdb_pg(tdb_base_url());
    int64_t pid = tdb_i64(pg, sql);
    PQfinish(pg);
    return pid;
}

START_TEST(test_listener_reports_a_lost_connection_then_listens_again)
{
    db_listener_t *l = listener_on(channel);
    int64_t pid = listener_backend_pid(channel);
    ck_assert_int_ne(pid, 0);
    PGconn *pg = tdb_pg(tdb_base_url());
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld, 5000)::int", (long long)pid);
    ck_assert_int_eq(tdb_i64(pg, sql), 1);
    PQfinish(pg);

    ck_assert_int_lt(db_listener_wait(l, 5000), 0); /* the loss, reported at once */
    int rc = -1;
    for (int i = 0; i < 50 && rc < 0; i++)
        rc = db_listener_wait(l, 100); /* reconnection, reported as "maybe" too */
    ck_assert_int_eq(rc, 0);
    ck_assert_int_ne(listener_backend_pid(channel), 0);
    notify(channel);
    ck_assert_int_eq(db_listener_wait(l, 5000), 1);
    db_listener_free(l);
}
END_TEST

START_TEST(test_listener_can_start_before_postgres_answers)
{
    err_t err = ERR_INIT;
    db_listener_t *l = db_listener_new("postgresql://nobody:x@127.0.0.1:1/none", channel, &err);
    ck_assert_ptr_nonnull(l);
    int64_t t0 = tdb_ms();
    ck_assert_int_lt(db_listener_wait(l, 300), 0);
    ck_assert_int_lt(db_listener_wait(l, 300), 0);
    ck_assert_int_lt(tdb_ms() - t0, 2000);
    db_listener_free(l);
}
END_TEST

static Suite *db_listen_suite(void)
{
    Suite *s = suite_create("db_listen");
    TCase *tc = check_case(s, "listen", 30);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_listener_wakes_on_a_notify_from_another_connection);
    tcase_add_test(tc, test_listener_wait_returns_zero_on_timeout);
    tcase_add_test(tc, test_listener_counts_a_burst_as_one_and_drains_it);
    tcase_add_test(tc, test_listener_ignores_other_channels);
    tcase_add_test(tc, test_listener_channel_name_is_quoted_exactly);
    tcase_add_test(tc, test_listener_rejects_a_bad_channel_name);
    tcase_add_test(tc, test_listener_reports_a_lost_connection_then_listens_again);
    tcase_add_test(tc, test_listener_can_start_before_postgres_answers);
    return s;
}

int main(void)
{
    return check_run(db_listen_suite(), CK_FORK_GETENV);
}
