/*
 * config: settings from environment variables, declared in one table per program
 * (redis config.c style), read once in main() into a struct:
 *
 *   struct cfg { const char *db_url; int64_t pool_size; int64_t saga_timeout_ms; };
 *   static const cfg_entry_t table[] = {
 *       {"DATABASE_URL", CFG_SECRET, 0, 0, "postgresql://...", offsetof(struct cfg, db_url),
 *        "PostgreSQL connection URI"},
 *       {"DB_POOL_SIZE", CFG_INT, 1, 64, "8", offsetof(struct cfg, pool_size), "..."},
 *       {"SAGA_TIMEOUT", CFG_DURATION, 1000, 3600000, "30s", offsetof(...), "..."},
 *   };
 *
 * Types and their fields: CFG_STR / CFG_SECRET → const char * (points into the
 * environment or the default; min/max bound the length when max > 0); CFG_INT →
 * int64_t within [min, max]; CFG_BOOL → bool ("true"/"false"/"1"/"0"); CFG_DURATION →
 * int64_t milliseconds from "250ms", "2s", "5m", "1h" or a bare number of ms, within
 * [min, max] ms. A NULL default makes the variable required.
 */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

typedef enum { CFG_STR, CFG_SECRET, CFG_INT, CFG_BOOL, CFG_DURATION } cfg_type_t;

typedef struct cfg_entry {
    const char *env;
    cfg_type_t type;
    int64_t min, max;
    const char *def; /* NULL: required */
    size_t offset;   /* of the field in the program's config struct */
    const char *help;
} cfg_entry_t;

/* cfg_load: fills `out` from the environment. On a bad or missing value returns
 * ERR_INVALID with a message naming the variable and what is allowed (main() prints
 * it and exits). */
int cfg_load(const cfg_entry_t *table, size_t n, void *out, err_t *err);

/* cfg_log: one info line with every effective value; CFG_SECRET values, and the
 * password part of URLs, are masked. */
void cfg_log(const cfg_entry_t *table, size_t n, const void *cfg);

/* cfg_usage_print: writes the table to `out` as help text (a program's --help),
 * one line per setting, in table order:
 *
 *   NAME=default              meaning [type and range]
 *   NAME (required)           meaning [type and range]
 *
 * "NAME=" is an empty default. An entry wider than the first column puts its meaning
 * on the next line, indented to the column. Defaults are masked as cfg_log masks
 * values (the password of a URL; a CFG_SECRET that is not a URL as a whole), so help
 * text never shows a password. Reads no environment variable. Returns 0, or -1 when
 * writing to `out` failed (ferror). Not thread-safe on the same stream. */
int cfg_usage_print(FILE *out, const cfg_entry_t *table, size_t n);

/* cfg_parse_duration: "250ms" | "2s" | "5m" | "1h" | "<ms>" → 0 and *ms, else -1. */
int cfg_parse_duration(const char *s, int64_t *ms);

#endif
