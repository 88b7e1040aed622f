/*
 * Static consumer-group membership (KAFKA_GROUP_INSTANCE_ID, docs/ha.md), with
 * user-svc standing for every service (common/src/svc.c): two instances with ids of
 * their own share the user-svc group of the test stack's Kafka; one is SIGKILLed and
 * started again under the same id. It must take back exactly the partitions it held,
 * and the other instance must see no rebalance at all, not even once the killed
 * process's session (10 s) has run out. Without static membership the restart joins
 * as a new member and the group rebalances when the dead one's session expires.
 *
 * A second process under an id already in use fences the first one: its consumer is
 * dead for good, and its /readyz must say so.
 *
 * Static members do not leave the group when they stop; each test ends by waiting
 * until one ordinary instance holds every partition, so that no member of this test
 * is left for the next one.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/clock.h"
#include "svc_proc.h"

/* The consumer's session.timeout.ms (kfk_consumer.c) and a margin. */
#define SM_SESSION_MS 10000
#define SM_MARGIN_MS  4000
#define SM_WAIT_MS    60000

/* Every "partitions assigned" or "partitions revoked" line: one per rebalance callback
 * (librdkafka calls it at every rebalance the member takes part in, even when its
 * share does not change). */
static int rebalances(const svc_proc_t *p)
{
    return svc_log_count(p->log, "\"msg\":\"kafka partitions assigned\"", NULL) +
           svc_log_count(p->log, "\"msg\":\"kafka partitions revoked\"", NULL);
}

/* user-svc as `name`, with KAFKA_GROUP_INSTANCE_ID=instance_id (NULL: none) and its
 * admin server on admin_port (0: any). */
static int start(svc_proc_t *p, const char *name, const char *instance_id, int admin_port)
{
    char db[1100], iid[128], admin[64];
    snprintf(db, sizeof(db), "DATABASE_URL=%s", svc_env("USER_DATABASE_URL"));
    snprintf(iid, sizeof(iid), "KAFKA_GROUP_INSTANCE_ID=%s", instance_id ? instance_id : "");
    snprintf(admin, sizeof(admin), "ADMIN_ADDR=127.0.0.1:%d", admin_port);
    const char *env[] = {db, "DB_POOL_SIZE=2", iid, admin, NULL};
    return svc_proc_start(p, USER_SVC, name, env);
}

/* The ids' sessions run out: an ordinary member ends up with every partition. */
static void wait_group_free(int want)
{
    svc_proc_t last;
    ck_assert_int_eq(start(&last, "user-svc-dynamic", NULL, 0), 0);
    svc_wait_partitions((svc_proc_t *[]){&last}, 1, want, SM_WAIT_MS);
    ck_assert_int_eq(svc_proc_end(&last), 0);
}

static int group_partitions(void)
{
    int n = svc_topic_partitions("inventory.events") + svc_topic_partitions("order.events");
    ck_assert_int_gt(n, 1);
    return n;
}

/* GET /readyz: the HTTP status, its body in body. */
static int readyz(int port, char *body, size_t n)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "curl -s -m 5 -w '\\n%%{http_code}' http://127.0.0.1:%d/readyz",
             port);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(body, 1, n - 1, f);
    pclose(f);
    body[got] = '\0';
    char *nl = strrchr(body, '\n');
    if (!nl)
        return 0;
    *nl = '\0';
    return atoi(nl + 1);
}

START_TEST(test_a_killed_static_member_restarted_takes_its_partitions_back_without_a_rebalance)
{
    int want = group_partitions();
    svc_proc_t a, b;
    ck_assert_int_eq(start(&a, "user-svc-static-a", "user-svc-test-a", 0), 0);
    ck_assert_int_eq(start(&b, "user-svc-static-b", "user-svc-test-b", 0), 0);
    svc_wait_partitions((svc_proc_t *[]){&a, &b}, 2, want, SM_WAIT_MS);
    int held_b = svc_proc_partitions(&b), seen_a = rebalances(&a);
    ck_assert_int_gt(held_b, 0);

    svc_proc_kill(&b);
    ck_assert_int_eq(svc_proc_restart(&b), 0); /* serving, with partitions */
    ck_assert_int_eq(svc_proc_partitions(&b), held_b);

    /* Past the moment the killed process's session would have expired. */
    clock_sleep_ms(SM_SESSION_MS + SM_MARGIN_MS);
    ck_assert_msg(rebalances(&a) == seen_a,
                  "the surviving instance saw %d rebalance callbacks after the restart, see %s",
                  rebalances(&a) - seen_a, a.log);
    ck_assert_int_eq(svc_proc_partitions(&a) + svc_proc_partitions(&b), want);
    ck_assert_int_eq(svc_proc_end(&a), 0);
    ck_assert_int_eq(svc_proc_end(&b), 0);

    /* Neither leaves on SIGTERM. */
    wait_group_free(want);
}
END_TEST

START_TEST(test_an_instance_fenced_by_another_with_its_id_reports_not_ready)
{
    int want = group_partitions(), port_a = check_free_port();
    svc_proc_t a, b;
    ck_assert_int_eq(start(&a, "user-svc-twin-a", "user-svc-test-twin", port_a), 0);
    char body[4096];
    ck_assert_int_eq(readyz(port_a, body, sizeof(body)), 200);
    ck_assert_int_eq(start(&b, "user-svc-twin-b", "user-svc-test-twin", 0), 0);
    int status = 0;
    for (int64_t end = clock_mono_us() + SM_WAIT_MS * 1000LL; clock_mono_us() < end;) {
        if ((status = readyz(port_a, body, sizeof(body))) != 200)
            break;
        clock_sleep_ms(200);
    }
    ck_assert_msg(status == 503 && strstr(body, "kafka consumer failed") && strstr(body, "fenced"),
                  "the fenced instance's /readyz: %d %s", status, body);
    ck_assert_int_eq(svc_proc_partitions(&b), want);
    svc_proc_end(&a); /* its consumer cannot leave cleanly any more */
    ck_assert_int_eq(svc_proc_end(&b), 0);
    wait_group_free(want);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("user_static_member");
    TCase *tc = check_case(s, "static", 240);
    tcase_add_test(
        tc, test_a_killed_static_member_restarted_takes_its_partitions_back_without_a_rebalance);
    tcase_add_test(tc, test_an_instance_fenced_by_another_with_its_id_reports_not_ready);
    return check_run(s, CK_FORK_GETENV);
}
