/*
 * cond_internal: condition variables for common/'s timed waits. Their deadlines are
 * read on CLOCK_MONOTONIC, so a wall-clock step (NTP, an operator) can neither
 * stretch a wait nor cut it short. pthread_cond_timedwait on such a variable takes an
 * absolute time on that clock (clock_mono_deadline).
 */
#ifndef COMMON_COND_INTERNAL_H
#define COMMON_COND_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "common/clock.h"

/* common__cond_init_monotonic: pthread_cond_init with the monotonic clock. The caller
 * destroys cv with pthread_cond_destroy. */
static inline void common__cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

#endif
