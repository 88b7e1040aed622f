/*
 * clock: wall and monotonic time in microseconds, RFC 3339 text in UTC.
 */
#include "common/clock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t clock_read_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_now_us(void)
{
    return clock_read_us(CLOCK_REALTIME);
}

int64_t clock_mono_us(void)
{
    return clock_read_us(CLOCK_MONOTONIC);
}

void clock_rfc3339(int64_t unix_us, char out[CLOCK_RFC3339_LEN])
{
    /* Floor division, so times before 1970 keep a positive fraction. */
    int64_t secs = unix_us / 1000000;
    int64_t frac = unix_us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    /* RFC 3339 has four-digit years only; anything else is a caller's bug. */
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
        snprintf(out, CLOCK_RFC3339_LEN, "0000-01-01T00:00:00.000000Z");
        return;
    }
    /* Through a roomy buffer: gcc cannot see that tm's fields are in range. */
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    size_t n = strnlen(tmp, CLOCK_RFC3339_LEN - 1);
    memcpy(out, tmp, n);
    out[n] = '\0';
}

char *clock_rfc3339_in(arena_t *a, int64_t unix_us)
{
    char *out = arena_alloc(a, CLOCK_RFC3339_LEN);
    clock_rfc3339(unix_us, out);
    return out;
}

/* Reads exactly `n` decimal digits from *p into *out and advances *p. */
static int clock_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int clock_expect(const char **p, const char *accepted)
{
    for (const char *a = accepted; *a != '\0'; a++) {
        if (**p == *a) {
            (*p)++;
            return 0;
        }
    }
    return -1;
}

static int clock_days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return days[month - 1] + (month == 2 && leap);
}

/* The fraction: any number of digits, microseconds kept, the rest dropped. */
static int clock_fraction(const char **p, int64_t *us)
{
    *us = 0;
    if (**p != '.')
        return 0;
    (*p)++;
    int n = 0;
    int64_t scale = 100000;
    while (**p >= '0' && **p <= '9') {
        *us += (**p - '0') * scale;
        scale /= 10;
        (*p)++;
        n++;
    }
    return n > 0 ? 0 : -1;
}

/* "Z" → 0, "+hh:mm" / "-hh:mm" → the offset east of UTC in seconds. */
static int clock_offset(const char **p, int64_t *offset_s)
{
    *offset_s = 0;
    if (clock_expect(p, "Zz") == 0)
        return 0;
    int sign = **p == '-' ? -1 : 1;
    int hh, mm;
    if (clock_expect(p, "+-") != 0 || clock_digits(p, 2, &hh) != 0 || clock_expect(p, ":") != 0 ||
        clock_digits(p, 2, &mm) != 0 || hh > 23 || mm > 59)
        return -1;
    *offset_s = sign * (hh * 3600 + mm * 60);
    return 0;
}

int clock_parse_rfc3339(const char *s, int64_t *unix_us)
{
    const char *p = s;
    int year, mon, day, hh, mi, ss;
    int64_t frac_us, offset_s;
    if (clock_digits(&p, 4, &year) != 0 || clock_expect(&p, "-") != 0 ||
        clock_digits(&p, 2, &mon) != 0 || clock_expect(&p, "-") != 0 ||
        clock_digits(&p, 2, &day) != 0 || clock_expect(&p, "Tt ") != 0 ||
        clock_digits(&p, 2, &hh) != 0 || clock_expect(&p, ":") != 0 ||
        clock_digits(&p, 2, &mi) != 0 || clock_expect(&p, ":") != 0 ||
        clock_digits(&p, 2, &ss) != 0 || clock_fraction(&p, &frac_us) != 0 ||
        clock_offset(&p, &offset_s) != 0 || *p != '\0')
        return -1;
    /* Second 60 is a leap second, which RFC 3339 allows; timegm folds it forward. */
    if (mon < 1 || mon > 12 || day < 1 || day > clock_days_in_month(year, mon) || hh > 23 ||
        mi > 59 || ss > 60)
        return -1;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon - 1,
                    .tm_mday = day,
                    .tm_hour = hh,
                    .tm_min = mi,
                    .tm_sec = ss};
    int64_t secs = (int64_t)timegm(&tm) - offset_s;
    *unix_us = secs * 1000000 + frac_us;
    return 0;
}

void clock_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

struct timespec clock_mono_deadline(int64_t ms)
{
    const int64_t cap_ms = INT64_C(10) * 366 * 86400 * 1000;
    ms = ms < 0 ? 0 : ms > cap_ms ? cap_ms : ms;
    int64_t us = clock_mono_us() + ms * 1000;
    return (struct timespec){.tv_sec = (time_t)(us / 1000000),
                             .tv_nsec = (long)(us % 1000000) * 1000};
}
