/*
 * shopctl: what the subcommands share — the settings read once in main(), where
 * output goes, and the exit statuses.
 */
#ifndef SHOPCTL_H
#define SHOPCTL_H

#include <stdint.h>
#include <stdio.h>

/* Exit statuses: done; something failed (a record not found, a produce not
 * acknowledged, an entry refused); bad usage or a bad setting. */
enum { SHOPCTL_OK = 0, SHOPCTL_FAILED = 1, SHOPCTL_USAGE = 2 };

typedef struct shopctl_cfg {
    const char *kafka_brokers;
    const char *log_level;
    int64_t timeout_ms; /* a read or a produce gives up after this */
} shopctl_cfg_t;

/* shopctl_usage_error: prints "shopctl: <message>" and a hint to stderr; returns
 * SHOPCTL_USAGE. */
int shopctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* shopctl_fail: prints "shopctl: <message>" to stderr; returns SHOPCTL_FAILED. */
int shopctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
