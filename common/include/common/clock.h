/*
 * clock: time as the fleet uses it — int64 microseconds, RFC 3339 UTC text.
 */
#ifndef COMMON_CLOCK_H
#define COMMON_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/arena.h"

#define CLOCK_RFC3339_LEN 32

/* clock_now_us: wall clock, microseconds since the Unix epoch. */
int64_t clock_now_us(void);

/* clock_mono_us: monotonic clock for durations and deadlines. */
int64_t clock_mono_us(void);

/* clock_mono_deadline: the absolute CLOCK_MONOTONIC time `ms` from now, for
 * pthread_cond_timedwait on a monotonic condition variable. A negative ms is now; ms
 * is capped at ten years, so any setting is safe from overflow. */
struct timespec clock_mono_deadline(int64_t ms);

/* clock_rfc3339: "2026-11-24T19:00:00.123456Z" for a wall-clock time in microseconds. */
void clock_rfc3339(int64_t unix_us, char out[CLOCK_RFC3339_LEN]);

/* clock_rfc3339_in: the same text in `a` (lives as long as the arena). */
char *clock_rfc3339_in(arena_t *a, int64_t unix_us);

/* clock_parse_rfc3339: the inverse, accepting any fraction and a Z or ±hh:mm offset;
 * 0 and *unix_us, else -1. */
int clock_parse_rfc3339(const char *s, int64_t *unix_us);

/* clock_sleep_ms: sleeps, resuming after signals. */
void clock_sleep_ms(int64_t ms);

#endif
