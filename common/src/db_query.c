/*
 * db_query: statements, results and advisory locks on leased connections, and the one translation of libpq failures into err_t (db.h's table).
 */
#include "db_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/metrics.h"

static metrics_histogram_t *h_query;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void db_query_metrics_init(void)
{
    h_query = metrics_histogram("db_query_duration_seconds", "PostgreSQL statement latency", NULL,
                                metrics_latency_buckets, metrics_latency_buckets_n);
}

/* ---- error translation ---- */

static int db_code_for_state(const char *state)
{
    if (!state)
        return ERR_INTERNAL;
    if (strcmp(state, "23505") == 0)
        return ERR_CONFLICT;
    if (strcmp(state, "23514") == 0 || strcmp(state, "23503") == 0)
        return ERR_PRECONDITION;
    if (strncmp(state, "22", 2) == 0)
        return ERR_INVALID;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        return ERR_ABORTED;
    if (strcmp(state, "57014") == 0)
        return ERR_TIMEOUT;
    /* A write on a server that takes none: a standby, or a primary being demoted. */
    if (strcmp(state, "25006") == 0)
        return ERR_UNAVAILABLE;
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0)
        return ERR_UNAVAILABLE;
    return ERR_INTERNAL;
}

/* The length of the schema identifier that `p` (just after an opening quote) starts
 * with, followed by its closing quote; 0 if none of the error's identifiers fits. */
static size_t db_known_identifier(const PGresult *res, const char *p)
{
    static const int fields[] = {PG_DIAG_SCHEMA_NAME, PG_DIAG_TABLE_NAME, PG_DIAG_COLUMN_NAME,
                                 PG_DIAG_DATATYPE_NAME, PG_DIAG_CONSTRAINT_NAME};
    for (size_t i = 0; res && i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *id = PQresultErrorField(res, fields[i]);
        size_t n = id ? strlen(id) : 0;
        if (n > 0 && strncmp(p, id, n) == 0 && p[n] == '"')
            return n;
    }
    return 0;
}

/* Copies the primary message into out, keeping quoted schema identifiers and
 * replacing any other quoted fragment — values, SQL tokens — by "…". Such a value may
 * itself contain quotes, so the redaction runs to the message's last quote. */
static void db_redact(const PGresult *res, const char *msg, char *out, size_t cap)
{
    size_t o = 0;
    const char *last_quote = strrchr(msg, '"');
    for (const char *p = msg; *p && o + 1 < cap;) {
        if (*p != '"') {
            out[o++] = *p++;
            continue;
        }
        size_t n = db_known_identifier(res, p + 1);
        if (n > 0) {
            o += (size_t)snprintf(out + o, cap - o, "\"%.*s\"", (int)n, p + 1);
            p += n + 2;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\"…\"");
            p = p == last_quote ? p + strlen(p) : last_quote + 1;
        }
        o = o < cap ? o : cap - 1;
    }
    out[o] = '\0';
}

int db__fail_pg(PGconn *pg, const PGresult *res, err_t *err)
{
    ExecStatusType st = PQresultStatus(res);
    if (res && st != PGRES_FATAL_ERROR && st != PGRES_NONFATAL_ERROR)
        return err_set(err, ERR_INTERNAL, "postgresql: unexpected result %s", PQresStatus(st));
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    char line[ERR_MSG_MAX];
    if (!primary) {
        /* libpq's own failure (lost connection, could not send): its message. */
        const char *m = PQerrorMessage(pg);
        snprintf(line, sizeof(line), "%.*s", (int)strcspn(m, "\n"), m);
        primary = line;
    }
    char text[ERR_MSG_MAX];
    db_redact(res, primary, text, sizeof(text));
    /* A broken socket wins over the SQLSTATE: the connection is gone either way. */
    int code = PQstatus(pg) == CONNECTION_BAD ? ERR_UNAVAILABLE : db_code_for_state(state);
    if (constraint)
        return err_set(err, code, "postgresql %s (constraint %s): %s", state ? state : "-",
                       constraint, text);
    return err_set(err, code, "postgresql %s: %s", state ? state : "-", text);
}

/* A prepared statement that the session no longer has (a DISCARD, a pooler in front)
 * or whose result columns changed under it (a migration of a newer instance altered
 * the table): the session's statements cannot be trusted any more. */
static bool db_stmt_stale(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return state && (strcmp(state, "26000") == 0 ||
                     (strcmp(state, "0A000") == 0 && primary &&
                      strstr(primary, "cached plan must not change result type")));
}

int db__fail(db_conn_t *c, const PGresult *res, err_t *err)
{
    int code = db__fail_pg(c->pg, res, err);
    ExecStatusType st = PQresultStatus(res);
    /* An unexpected status (COPY) leaves the protocol in a state we do not handle. */
    if (code == ERR_UNAVAILABLE || (res && st != PGRES_FATAL_ERROR && st != PGRES_NONFATAL_ERROR))
        c->broken = true;
    /* A stale statement: the connection is replaced on release (with it, every prepared
     * statement), and db_txn runs the transaction again on a fresh one. */
    if (res && db_stmt_stale(res)) {
        c->broken = true;
        code = ERR_ABORTED;
        if (err)
            err->code = code;
    }
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    c->read_only = c->read_only || (state && strcmp(state, "25006") == 0);
    c->last_code = code;
    return code;
}

bool db_err_constraint(const err_t *err, const char *constraint)
{
    if (!err || !constraint || (err->code != ERR_CONFLICT && err->code != ERR_PRECONDITION))
        return false;
    /* "postgresql SSSSS (constraint <name>): ..." — the prefix db__fail_pg writes. */
    char needle[ERR_MSG_MAX];
    int n = snprintf(needle, sizeof(needle), " (constraint %s): ", constraint);
    const char *p = strchr(err->msg, ' ');
    p = p ? strchr(p + 1, ' ') : NULL;
    return p && strncmp(err->msg, "postgresql ", 11) == 0 && strncmp(p, needle, (size_t)n) == 0;
}

/* ---- statements ---- */

int db__cmd(db_conn_t *c, const char *sql, err_t *err)
{
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = db__fail(c, r, err);
    PQclear(r);
    return rc;
}

static void db_res_clear(void *p)
{
    PQclear(p);
}

db_res_t *db_exec(db_conn_t *c, arena_t *a, const char *sql, int n_params,
                  const char *const *params, err_t *err)
{
    if (n_params < 0 || (n_params > 0 && !params)) {
        err_set(err, ERR_INVALID, "db_exec: bad parameter list");
        return NULL;
    }
    pthread_once(&metrics_once, db_query_metrics_init);
    int64_t t0 = clock_mono_us();
    PGresult *r = db__query(c, sql, n_params, params, err);
    metrics_histogram_observe(h_query, (double)(clock_mono_us() - t0) / 1e6);
    if (!r)
        return NULL;
    db_res_t *res = arena_alloc(a, sizeof(*res));
    res->pg = r;
    arena_cleanup_add(a, db_res_clear, r);
    return res;
}

/* The variadic parameters of db_execf and db_execf_nowait as an array in `a`. */
static const char **db_params(arena_t *a, int n_params, va_list ap)
{
    const char **params = NULL;
    if (n_params > 0) {
        params = arena_alloc(a, sizeof(*params) * (size_t)n_params);
        for (int i = 0; i < n_params; i++)
            params[i] = va_arg(ap, const char *);
    }
    return params;
}

db_res_t *db_execf(db_conn_t *c, arena_t *a, err_t *err, const char *sql, int n_params, ...)
{
    va_list ap;
    va_start(ap, n_params);
    const char **params = db_params(a, n_params, ap);
    va_end(ap);
    return db_exec(c, a, sql, n_params, params, err);
}

int db_execf_nowait(db_conn_t *c, arena_t *a, err_t *err, const char *sql, int n_params, ...)
{
    va_list ap;
    va_start(ap, n_params);
    const char **params = db_params(a, n_params, ap);
    va_end(ap);
    if (c->in_txn)
        return db__pipe_nowait(c, sql, n_params, params, err);
    return db_exec(c, a, sql, n_params, params, err) ? 0 : err->code;
}

/* ---- results ---- */

int db_res_rows(const db_res_t *r)
{
    return PQntuples(r->pg);
}

int64_t db_res_affected(const db_res_t *r)
{
    return strtoll(PQcmdTuples(r->pg), NULL, 10); /* "" when not applicable: 0 */
}

bool db_res_null(const db_res_t *r, int row, int col)
{
    return PQgetisnull(r->pg, row, col) != 0;
}

const char *db_res_str(const db_res_t *r, int row, int col)
{
    const char *v = PQgetvalue(r->pg, row, col);
    return v ? v : ""; /* libpq gives "" for NULL and NULL out of range */
}

int64_t db_res_i64(const db_res_t *r, int row, int col)
{
    return strtoll(db_res_str(r, row, col), NULL, 10);
}

bool db_res_bool(const db_res_t *r, int row, int col)
{
    return db_res_str(r, row, col)[0] == 't';
}

const uint8_t *db_res_bytea(const db_res_t *r, arena_t *a, int row, int col, size_t *len)
{
    *len = 0;
    if (PQgetisnull(r->pg, row, col))
        return NULL;
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)db_res_str(r, row, col), &n);
    if (!raw)
        common__oom(n);
    uint8_t *out = arena_alloc(a, n + 1);
    memcpy(out, raw, n);
    PQfreemem(raw);
    *len = n;
    return out;
}

const char *db_i64_param(arena_t *a, int64_t v)
{
    return arena_sprintf(a, "%" PRId64, v);
}

const char *db_bytea_param(arena_t *a, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *in = data;
    char *out = arena_alloc(a, 2 + len * 2 + 1), *o = out;
    *o++ = '\\';
    *o++ = 'x';
    for (size_t i = 0; i < len; i++) {
        *o++ = hex[in[i] >> 4];
        *o++ = hex[in[i] & 0xf];
    }
    *o = '\0';
    return out;
}

/* ---- rollback (db_pipe, db_migrate, db_txn) ---- */

void db__rollback(db_conn_t *c)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return;
    err_t ignored; /* fn's error is the one to report; a failed ROLLBACK marks c broken */
    db__cmd(c, "ROLLBACK", &ignored);
}

/* ---- advisory locks ---- */

static PGresult *db_lock_call(db_conn_t *c, const char *sql, int64_t key, err_t *err)
{
    char k[24];
    snprintf(k, sizeof(k), "%" PRId64, key);
    const char *params[] = {k};
    return db__query(c, sql, 1, params, err);
}

int db_advisory_try_lock(db_conn_t *c, int64_t key, bool *got, err_t *err)
{
    *got = false;
    PGresult *r = db_lock_call(c, "SELECT pg_try_advisory_lock($1::bigint)", key, err);
    if (!r)
        return c->last_code;
    *got = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

int db_advisory_unlock(db_conn_t *c, int64_t key, err_t *err)
{
    PGresult *r = db_lock_call(c, "SELECT pg_advisory_unlock($1::bigint)", key, err);
    if (!r)
        return c->last_code;
    bool held = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return held ? 0 : err_set(err, ERR_PRECONDITION, "advisory lock %" PRId64 " was not held", key);
}
