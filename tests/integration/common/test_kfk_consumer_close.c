/*
 * kfk_consumer_close against the stack's Kafka, at the moment librdkafka 2.0.2 (Debian
 * 12) cannot take it: the member's JoinGroup has just been answered and its SyncGroup
 * not yet. There rd_kafka_destroy aborted (the cooperative-sticky assignor's state is
 * still NULL; librdkafka issue 4312): a service stopped within seconds of its start
 * died of SIGABRT instead of exiting 0. The moment is found in librdkafka's own debug
 * log ("JoinGroup response ... (no error)", facility JOINGROUP), read from log.h's
 * output as it is written; each try is a fresh group, so each consumer is the leader
 * of a group of one and still has a metadata request and a SyncGroup round trip ahead.
 * Check runs each test in a process of its own: an abort fails the test, with signal 6.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/log.h"
#include "saga_test_support.h"

#define TRIES   3
#define WAIT_MS 30000

/* Reads log.h's output from a pipe, line by line, flagging the answered JoinGroup;
 * drains until the write end closes, so no log writer ever blocks. */
typedef struct log_watch {
    int fd;
    atomic_bool joined;
    pthread_t thread;
} log_watch_t;

static void *log_watch_main(void *arg)
{
    log_watch_t *w = arg;
    char buf[1 << 16];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(w->fd, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            if (strstr(line, "JoinGroup response") && strstr(line, "(no error)"))
                atomic_store(&w->joined, true);
            line = nl + 1;
        }
        have = (size_t)(buf + have - line);
        memmove(buf, line, have);
        if (have == sizeof(buf) - 1)
            have = 0; /* a line longer than the buffer: not ours */
    }
    return NULL;
}

/* Starts a consumer of e's topic in a fresh group and closes it the moment its
 * JoinGroup is answered (librdkafka's group debug goes to the watched log). */
static void close_right_after_join(st_env_t *e, log_watch_t *w, int try)
{
    char group[ST_NAME_MAX];
    st_name("test-close", '-', group, sizeof(group));
    static const char *const conf[] = {"debug", "cgrp", NULL};
    err_t err = ERR_INIT;
    atomic_store(&w->joined, false);
    kfk_consumer_t *c =
        kfk_consumer_new(e->brokers, group, (const char *[]){e->topic}, 1, conf, &err);
    ck_assert_msg(c, "%s", err.msg);
    int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
    while (!atomic_load(&w->joined) && clock_mono_us() < deadline)
        usleep(100); /* librdkafka's threads do the joining: nothing to poll */
    bool joined = atomic_load(&w->joined);
    kfk_consumer_close(c); /* aborted here without the wait for the sync */
    ck_assert_msg(joined, "try %d: no JoinGroup answered within %d ms", try, WAIT_MS);
}

START_TEST(closed_between_join_and_sync)
{
    /* log.h's output goes to the watcher from before the first thread starts. */
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    log_watch_t w = {.fd = fds[0]};
    atomic_init(&w.joined, false);
    log_set_fd(fds[1]);
    ck_assert_int_eq(pthread_create(&w.thread, NULL, log_watch_main, &w), 0);

    st_env_t e;
    st_setup(&e, "kfk_close");
    log_init("test", LOG_LEVEL_DEBUG); /* st_setup's is warn */
    for (int try = 1; try <= TRIES; try++)
        close_right_after_join(&e, &w, try);
    st_teardown(&e);

    log_set_fd(STDOUT_FILENO);
    close(fds[1]);
    pthread_join(w.thread, NULL);
    close(fds[0]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kfk_consumer_close");
    TCase *tc = check_case(s, "close", 180);
    tcase_add_test(tc, closed_between_join_and_sync);
    return check_run(s, CK_FORK_GETENV);
}
