/*
 * uuid: UUIDv7 (RFC 9562 §5.7) with the 12-bit rand_a field used as a counter
 * (§6.2, method 1), so ids made by one process sort in creation order even within a
 * millisecond. The counter starts at a random value below 2^11 each new millisecond;
 * when it runs out, the timestamp is advanced by one (allowed by §6.2) rather than
 * breaking the order. The same holds if the wall clock steps back.
 */
#include "common/uuid.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/text.h"

static pthread_mutex_t uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t uuid_last_ms;
static uint16_t uuid_counter;

static void uuid_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "fatal: getrandom: %s\n", strerror(errno));
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

/* The next (timestamp, counter) pair, strictly after the previous one. */
static void uuid_next_stamp(uint16_t seed, uint64_t *ms, uint16_t *counter)
{
    uint64_t now = (uint64_t)(clock_now_us() / 1000);
    pthread_mutex_lock(&uuid_lock);
    if (now > uuid_last_ms) {
        uuid_last_ms = now;
        uuid_counter = seed & 0x7FF;
    } else if (uuid_counter < 0xFFF) {
        uuid_counter++;
    } else {
        uuid_last_ms++;
        uuid_counter = seed & 0x7FF;
    }
    *ms = uuid_last_ms;
    *counter = uuid_counter;
    pthread_mutex_unlock(&uuid_lock);
}

void uuid_new(char out[UUID_STR_LEN])
{
    unsigned char rnd[10];
    uuid_random(rnd, sizeof(rnd));
    uint64_t ms;
    uint16_t counter;
    uuid_next_stamp((uint16_t)(rnd[0] << 8 | rnd[1]), &ms, &counter);

    unsigned char b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (counter >> 8)); /* version 7 */
    b[7] = (unsigned char)counter;
    memcpy(b + 8, rnd + 2, 8);
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3F)); /* variant 10 */

    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0xF];
    }
    out[o] = '\0';
}

bool uuid_valid(const char *s)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return s[36] == '\0';
}

const char *uuid_canon(arena_t *a, const char *s)
{
    return uuid_valid(s) ? text_ascii_lower(a, s) : NULL;
}
