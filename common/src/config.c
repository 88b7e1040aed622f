/*
 * config: the settings table of config.h read from the environment.
 *
 * An empty variable counts as unset (compose files and systemd units often write
 * `NAME=` to mean "not given"), so it takes the default or, for a required one, is
 * reported missing. A secret may come from a file instead: NAME_FILE=/run/secrets/x
 * (compose and Kubernetes secrets), never both. Defaults go through the same checks as the environment, so a
 * bad default is caught the first time the program starts.
 */
#include "common/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/arena.h"
#include "common/log.h"

/* "1h", "5m", "30s", "250ms": the largest unit that divides the value exactly. */
static void cfg_format_duration(int64_t ms, char *out, size_t size)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(out, size, "%" PRId64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(out, size, "%" PRId64 "m", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(out, size, "%" PRId64 "s", ms / 1000);
    else
        snprintf(out, size, "%" PRId64 "ms", ms);
}

int cfg_parse_duration(const char *s, int64_t *ms)
{
    static const struct {
        const char *suffix;
        int64_t ms;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        int64_t out;
        if (__builtin_mul_overflow((int64_t)v, units[i].ms, &out))
            return -1;
        *ms = out;
        return 0;
    }
    return -1;
}

static int cfg_parse_int(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int cfg_parse_bool(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)
        *out = true;
    else if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

static int cfg_load_str(const cfg_entry_t *e, const char *v, void *field, err_t *err)
{
    size_t len = strlen(v);
    if (e->max > 0 && ((int64_t)len < e->min || (int64_t)len > e->max)) {
        return err_set(err, ERR_INVALID,
                       "%s: length must be in [%" PRId64 ", %" PRId64 "] bytes, got %zu", e->env,
                       e->min, e->max, len);
    }
    *(const char **)field = v;
    return 0;
}

static int cfg_load_int(const cfg_entry_t *e, const char *v, void *field, err_t *err)
{
    int64_t n;
    if (cfg_parse_int(v, &n) != 0 || n < e->min || n > e->max) {
        return err_set(err, ERR_INVALID,
                       "%s: must be an integer in [%" PRId64 ", %" PRId64 "], got \"%s\"", e->env,
                       e->min, e->max, v);
    }
    *(int64_t *)field = n;
    return 0;
}

static int cfg_load_bool(const cfg_entry_t *e, const char *v, void *field, err_t *err)
{
    bool b;
    if (cfg_parse_bool(v, &b) != 0)
        return err_set(err, ERR_INVALID, "%s: must be true, false, 1 or 0, got \"%s\"", e->env, v);
    *(bool *)field = b;
    return 0;
}

static int cfg_load_duration(const cfg_entry_t *e, const char *v, void *field, err_t *err)
{
    int64_t ms;
    if (cfg_parse_duration(v, &ms) != 0 || ms < e->min || ms > e->max) {
        char lo[32], hi[32];
        cfg_format_duration(e->min, lo, sizeof(lo));
        cfg_format_duration(e->max, hi, sizeof(hi));
        return err_set(err, ERR_INVALID,
                       "%s: must be a duration (250ms, 2s, 5m, 1h or milliseconds) in [%s, %s], "
                       "got \"%s\"",
                       e->env, lo, hi, v);
    }
    *(int64_t *)field = ms;
    return 0;
}

/* Secrets read from files (NAME_FILE): kept for the life of the process, as the
 * environment's strings are, and reachable from here. */
#define CFG_FILES_MAX 32
#define CFG_FILE_MAX  65536 /* bytes of a secret file when the entry sets no maximum */
static char *cfg_files[CFG_FILES_MAX];
static size_t cfg_n_files;

/* The secret in the file named by e's NAME_FILE into *v (NULL when NAME_FILE is not
 * set): one trailing newline (or CRLF) is not part of it, so `echo secret > file`
 * works. 0, or ERR_INVALID when both NAME and NAME_FILE are set or the file cannot be
 * read, is empty or is too long. */
static int cfg_secret_file(const cfg_entry_t *e, const char **v, err_t *err)
{
    char name[128];
    snprintf(name, sizeof(name), "%s_FILE", e->env);
    const char *path = getenv(name);
    *v = NULL;
    if (path == NULL || *path == '\0')
        return 0;
    const char *direct = getenv(e->env);
    if (direct != NULL && *direct != '\0')
        return err_set(err, ERR_INVALID, "%s and %s are both set: give one", e->env, name);
    size_t cap = e->max > 0 ? (size_t)e->max : CFG_FILE_MAX;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(err, ERR_INVALID, "%s: cannot read %s: %s", name, path, strerror(errno));
    char *buf = malloc(cap + 3); /* the value, a CRLF, one byte to see that it is longer */
    if (buf == NULL)
        abort();
    size_t len = fread(buf, 1, cap + 3, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (len > 0 && buf[len - 1] == '\n')
        len -= len > 1 && buf[len - 2] == '\r' ? 2 : 1;
    int rc = 0;
    if (failed)
        rc = err_set(err, ERR_INVALID, "%s: cannot read %s", name, path);
    else if (len == 0)
        rc = err_set(err, ERR_INVALID, "%s: %s is empty", name, path);
    else if (len > cap)
        rc = err_set(err, ERR_INVALID, "%s: %s holds more than %zu bytes", name, path, cap);
    else if (memchr(buf, '\0', len) != NULL)
        rc = err_set(err, ERR_INVALID, "%s: %s holds a NUL byte", name, path);
    else if (cfg_n_files == CFG_FILES_MAX)
        rc = err_set(err, ERR_INVALID, "%s: more than %d secret files", name, CFG_FILES_MAX);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    cfg_files[cfg_n_files++] = buf;
    *v = buf;
    return 0;
}

static int cfg_load_one(const cfg_entry_t *e, void *out, err_t *err)
{
    const char *v = NULL;
    if (e->type == CFG_SECRET && cfg_secret_file(e, &v, err) != 0)
        return err->code;
    if (v == NULL)
        v = getenv(e->env);
    if (v == NULL || *v == '\0')
        v = e->def;
    if (v == NULL)
        return err_set(err, ERR_INVALID, "%s: required but not set (%s)", e->env,
                       e->help != NULL ? e->help : "no description");
    void *field = (char *)out + e->offset;
    switch (e->type) {
    case CFG_STR:
    case CFG_SECRET:
        return cfg_load_str(e, v, field, err);
    case CFG_INT:
        return cfg_load_int(e, v, field, err);
    case CFG_BOOL:
        return cfg_load_bool(e, v, field, err);
    case CFG_DURATION:
        return cfg_load_duration(e, v, field, err);
    }
    return err_set(err, ERR_INTERNAL, "%s: unknown setting type %d", e->env, (int)e->type);
}

int cfg_load(const cfg_entry_t *table, size_t n, void *out, err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = cfg_load_one(&table[i], out, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Masks "password=..." (libpq keyword form, query strings) up to a space or '&'. */
static void cfg_mask_password_kw(arena_t *a, char **s)
{
    char *p = strcasestr(*s, "password=");
    if (p == NULL)
        return;
    char *val = p + strlen("password=");
    size_t vlen = strcspn(val, " &");
    *s = arena_sprintf(a, "%.*s***%s", (int)(val - *s), *s, val + vlen);
}

/* Masks the password of a URL's userinfo: scheme://user:secret@host → user:***@host.
 * The authority ends at the first '/', '?' or '#' after "://"; its last '@' ends the
 * userinfo, so an unescaped '@' in the password is still covered. */
static char *cfg_mask_url(arena_t *a, const char *v)
{
    char *s = arena_strdup(a, v);
    const char *scheme_end = strstr(s, "://");
    if (scheme_end != NULL) {
        const char *auth = scheme_end + 3;
        size_t auth_len = strcspn(auth, "/?#");
        const char *at = memrchr(auth, '@', auth_len);
        const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon != NULL)
            s = arena_sprintf(a, "%.*s***%s", (int)(colon + 1 - s), s, at);
    }
    cfg_mask_password_kw(a, &s);
    return s;
}

static log_field_t cfg_log_field(arena_t *a, const cfg_entry_t *e, const void *cfg)
{
    const void *field = (const char *)cfg + e->offset;
    switch (e->type) {
    case CFG_SECRET:
        return LOG_STR(e->env, "***");
    case CFG_STR: {
        const char *v = *(const char *const *)field;
        return LOG_STR(e->env, v != NULL ? cfg_mask_url(a, v) : "");
    }
    case CFG_INT:
        return LOG_INT(e->env, *(const int64_t *)field);
    case CFG_BOOL:
        return LOG_BOOL(e->env, *(const bool *)field);
    case CFG_DURATION: {
        char *d = arena_alloc(a, 32);
        cfg_format_duration(*(const int64_t *)field, d, 32);
        return LOG_STR(e->env, d);
    }
    }
    return LOG_STR(e->env, "?");
}

void cfg_log(const cfg_entry_t *table, size_t n, const void *cfg)
{
    arena_t *a = arena_new(0);
    log_field_t *fields = arena_calloc(a, n + 1, sizeof(*fields));
    for (size_t i = 0; i < n; i++)
        fields[i] = cfg_log_field(a, &table[i], cfg);
    fields[n] = (log_field_t){.type = LOG_T_END};
    log__write(LOG_LEVEL_INFO, "effective configuration", fields);
    arena_free(a);
}

/* Help text: "NAME=default" (or "NAME (required)") is padded to this width, then the
 * meaning follows; a longer head puts the meaning on a line of its own. */
#define CFG_USAGE_HEAD_WIDTH 32

/* The type and range of a setting, e.g. "integer 1..64" or "duration 10ms..1h". */
static void cfg_describe(const cfg_entry_t *e, char *out, size_t size)
{
    char lo[32], hi[32];
    switch (e->type) {
    case CFG_STR:
    case CFG_SECRET: {
        const char *kind = e->type == CFG_SECRET ? "secret" : "text";
        char file[96] = "";
        if (e->type == CFG_SECRET)
            snprintf(file, sizeof(file), "; or from a file: %s_FILE=<path>", e->env);
        if (e->max <= 0)
            snprintf(out, size, "%s%s", kind, file);
        else if (e->min == e->max)
            snprintf(out, size, "%s, %" PRId64 " bytes%s", kind, e->max, file);
        else
            snprintf(out, size, "%s, %" PRId64 "..%" PRId64 " bytes%s", kind, e->min, e->max, file);
        return;
    }
    case CFG_INT:
        snprintf(out, size, "integer %" PRId64 "..%" PRId64, e->min, e->max);
        return;
    case CFG_BOOL:
        snprintf(out, size, "true or false");
        return;
    case CFG_DURATION:
        cfg_format_duration(e->min, lo, sizeof(lo));
        cfg_format_duration(e->max, hi, sizeof(hi));
        snprintf(out, size, "duration %s..%s", lo, hi);
        return;
    }
    snprintf(out, size, "unknown type");
}

/* A default as help text shows it, masked as cfg_log masks values: the password of a
 * URL (or of password=...), and any other non-empty secret as a whole. */
static const char *cfg_usage_default(arena_t *a, const cfg_entry_t *e)
{
    bool urlish = strstr(e->def, "://") != NULL || strcasestr(e->def, "password=") != NULL;
    if (e->type == CFG_SECRET && e->def[0] != '\0' && !urlish)
        return "***";
    return cfg_mask_url(a, e->def);
}

static void cfg_usage_line(FILE *out, arena_t *a, const cfg_entry_t *e)
{
    char *head = e->def != NULL ? arena_sprintf(a, "%s=%s", e->env, cfg_usage_default(a, e))
                                : arena_sprintf(a, "%s (required)", e->env);
    char kind[160];
    cfg_describe(e, kind, sizeof(kind));
    const char *help = e->help != NULL ? e->help : "";
    if (strlen(head) <= CFG_USAGE_HEAD_WIDTH)
        fprintf(out, "  %-*s  %s [%s]\n", CFG_USAGE_HEAD_WIDTH, head, help, kind);
    else
        fprintf(out, "  %s\n  %-*s  %s [%s]\n", head, CFG_USAGE_HEAD_WIDTH, "", help, kind);
}

int cfg_usage_print(FILE *out, const cfg_entry_t *table, size_t n)
{
    arena_t *a = arena_new(0);
    for (size_t i = 0; i < n; i++)
        cfg_usage_line(out, a, &table[i]);
    arena_free(a);
    return ferror(out) ? -1 : 0;
}
