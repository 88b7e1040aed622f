/*
 * outbox_relay_proc: an outbox relay in a process of its own, for the tests that
 * SIGKILL a relay mid-batch or run two at once.
 *
 *   outbox_relay_proc <db_url> <brokers> <lock_key> <batch_size> <linger_ms>
 *
 * Logs JSON lines on stdout (among them "outbox relay acquired the lock" when it
 * becomes the relay) and stops cleanly on SIGTERM or SIGINT. A long linger.ms keeps
 * each batch in flight for a while, so a kill lands between produce and mark.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/kfk.h"
#include "common/log.h"
#include "common/outbox.h"
#include "kafka_auth.h"

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s db_url brokers lock_key batch_size linger_ms\n", argv[0]);
        return 2;
    }
    /* Signals are taken by sigwait below, never by a library thread. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    log_init("relay-proc", LOG_LEVEL_INFO);

    ka_admin(); /* the test's principal, from the environment it inherited */
    err_t err = ERR_INIT;
    const char *conf[] = {"linger.ms", argv[5], NULL};
    kfk_producer_t *p = kfk_producer_new(argv[2], "relay-proc", conf, &err);
    if (!p) {
        fprintf(stderr, "producer: %s\n", err.msg);
        return 1;
    }
    outbox_relay_opts_t o = {.db_url = argv[1],
                             .producer = p,
                             .lock_key = strtoll(argv[3], NULL, 10),
                             .batch_size = atoi(argv[4]),
                             .poll_interval_ms = 200};
    outbox_relay_t *r = outbox_relay_start(&o, &err);
    if (!r) {
        fprintf(stderr, "relay: %s\n", err.msg);
        kfk_producer_free(p);
        return 1;
    }
    LOG_INFO("relay process ready");
    int sig;
    sigwait(&stop, &sig);
    outbox_relay_stop(r);
    kfk_producer_free(p);
    return 0;
}
