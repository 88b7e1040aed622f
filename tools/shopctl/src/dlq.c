/*
 * dlq: list, show and replay dead letters (docs/dlq.md).
 *
 * Reading uses a kfk_reader (no consumer group, nothing committed), from each
 * partition's oldest offset to its high watermark at the start, so a listing ends.
 * Replay produces through an idempotent producer and waits for every acknowledgement;
 * each replayed record carries the original key, value and headers (the dlq_*
 * headers of the failure left out) plus dlq_replayed_by, dlq_replayed_at,
 * dlq_replay_reason and dlq_replayed_from. Nothing marks the dead-letter entry
 * itself (a topic is append-only): the consumer's log line (saga_replay.c) and
 * shopctl's output are the record of a replay.
 */
#include "dlq.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/json_pb.h"
#include "common/kfk.h"
#include "dlq_entry.h"
#include "fleet.h"

#define DLQ_TOPICS_MAX  64
#define DLQ_COORDS_MAX  1024
#define DLQ_REPLAY_HDRS 4

static const char *const dlq_fleet_topics[] = {FLEET_DLQ_TOPICS};

/* A subcommand's arguments. */
typedef struct dlq_args {
    const char *topics[DLQ_TOPICS_MAX];
    size_t n_topics;
    const char *coords[DLQ_COORDS_MAX];
    size_t n_coords;
    bool json, all, dry_run, force;
    int64_t limit; /* list: at most this many entries (0: all) */
    const char *by, *reason;
} dlq_args_t;

/* Whether `word` is one of the space-separated words of `list`. */
static bool dlq_word_in(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *w = list; *w;) {
        size_t len = strcspn(w, " ");
        if (len == n && strncmp(w, word, n) == 0)
            return true;
        w += len + (w[len] == ' ');
    }
    return false;
}

/* Parses argv into *a; the options `allowed` ("topic json limit ...") only, and
 * coordinates if `allowed` names "coords". */
static int dlq_args_parse(int argc, char **argv, const char *cmd, const char *allowed,
                          dlq_args_t *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2) != 0) {
            if (!dlq_word_in(allowed, "coords"))
                return shopctl_usage_error("dlq %s: unexpected argument '%s'", cmd, s);
            if (a->n_coords == DLQ_COORDS_MAX)
                return shopctl_usage_error("dlq %s: at most %d entries", cmd, DLQ_COORDS_MAX);
            a->coords[a->n_coords++] = s;
            continue;
        }
        const char *opt = s + 2;
        if (!dlq_word_in(allowed, opt) || strcmp(opt, "coords") == 0)
            return shopctl_usage_error("dlq %s: unknown option '%s'", cmd, s);
        bool takes_value = strcmp(opt, "topic") == 0 || strcmp(opt, "limit") == 0 ||
                           strcmp(opt, "by") == 0 || strcmp(opt, "reason") == 0;
        if (takes_value && i + 1 >= argc)
            return shopctl_usage_error("dlq %s: %s needs a value", cmd, s);
        if (strcmp(opt, "json") == 0) {
            a->json = true;
        } else if (strcmp(opt, "all") == 0) {
            a->all = true;
        } else if (strcmp(opt, "dry-run") == 0) {
            a->dry_run = true;
        } else if (strcmp(opt, "force") == 0) {
            a->force = true;
        } else if (strcmp(opt, "topic") == 0) {
            const char *t = argv[++i];
            size_t len = strlen(t);
            if (len < 5 || strcmp(t + len - 4, ".dlq") != 0)
                return shopctl_usage_error("dlq %s: --topic %s is not a dead-letter topic "
                                           "(<topic>.dlq)",
                                           cmd, t);
            if (a->n_topics == DLQ_TOPICS_MAX)
                return shopctl_usage_error("dlq %s: at most %d topics", cmd, DLQ_TOPICS_MAX);
            a->topics[a->n_topics++] = t;
        } else if (strcmp(opt, "limit") == 0) {
            char *end;
            errno = 0;
            long long n = strtoll(argv[++i], &end, 10);
            if (errno || *end || n < 1)
                return shopctl_usage_error("dlq %s: --limit must be a positive integer", cmd);
            a->limit = n;
        } else if (strcmp(opt, "by") == 0) {
            a->by = argv[++i];
        } else { /* reason: every other allowed option is handled above */
            a->reason = argv[++i];
        }
    }
    if (a->n_topics == 0) {
        for (size_t i = 0; i < sizeof(dlq_fleet_topics) / sizeof(dlq_fleet_topics[0]); i++)
            a->topics[a->n_topics++] = dlq_fleet_topics[i];
    }
    return SHOPCTL_OK;
}

/* Schedules every partition of every topic of `a` on the reader. */
static int dlq_add_topics(kfk_reader_t *r, const dlq_args_t *a)
{
    err_t err = ERR_INIT;
    for (size_t t = 0; t < a->n_topics; t++) {
        int n = kfk_reader_partition_count(r, a->topics[t], &err);
        if (n < 0)
            return shopctl_fail("%s", err.msg);
        for (int p = 0; p < n; p++)
            if (kfk_reader_add(r, a->topics[t], p, -1, 0, &err) != 0)
                return shopctl_fail("%s", err.msg);
    }
    return SHOPCTL_OK;
}

/* Writes j as one line and frees it. */
static void dlq_print_json(json_t *j, size_t flags)
{
    json_dumpf(j, stdout, flags | JSON_ENSURE_ASCII);
    fputc('\n', stdout);
    json_decref(j);
}

/* A read error ends the command; the end of what was scheduled is 0. */
static int dlq_read_status(const err_t *err)
{
    return err->code == ERR_OK ? SHOPCTL_OK : shopctl_fail("%s", err->msg);
}

static int dlq_list(const shopctl_cfg_t *cfg, const dlq_args_t *a)
{
    err_t err = ERR_INIT;
    kfk_reader_t *r = kfk_reader_new(cfg->kafka_brokers, "shopctl", &err);
    if (!r)
        return shopctl_fail("%s", err.msg);
    int rc = dlq_add_topics(r, a);
    int64_t shown = 0;
    kfk_msg_t *m;
    while (rc == SHOPCTL_OK && (!a->limit || shown < a->limit) &&
           (m = kfk_reader_next(r, (int)cfg->timeout_ms, &err)) != NULL) {
        arena_t *ar = arena_new(0);
        dlq_entry_t e;
        dlq_entry_parse(m, ar, &e);
        if (a->json)
            dlq_print_json(dlq_entry_json(&e), JSON_COMPACT);
        else
            dlq_entry_print_line(stdout, &e);
        shown++;
        arena_free(ar);
        kfk_msg_free(m);
    }
    if (rc == SHOPCTL_OK && (!a->limit || shown < a->limit))
        rc = dlq_read_status(&err);
    kfk_reader_free(r);
    return rc;
}

/* The record at `c` (owned), or NULL after printing why. */
static kfk_msg_t *dlq_read_one(const shopctl_cfg_t *cfg, kfk_reader_t *r, const dlq_coords_t *c)
{
    err_t err = ERR_INIT;
    int n = kfk_reader_partition_count(r, c->topic, &err);
    if (n >= 0 && c->partition >= n)
        err_set(&err, ERR_NOT_FOUND, "%s has %d partitions, not %" PRId32, c->topic, n,
                c->partition);
    if (n < 0 || err.code != ERR_OK ||
        kfk_reader_add(r, c->topic, c->partition, c->offset, 1, &err) != 0) {
        shopctl_fail("%s:%" PRId32 ":%" PRId64 ": %s", c->topic, c->partition, c->offset, err.msg);
        return NULL;
    }
    kfk_msg_t *m = kfk_reader_next(r, (int)cfg->timeout_ms, &err);
    if (!m || kfk_msg_offset(m) != c->offset) {
        shopctl_fail("%s:%" PRId32 ":%" PRId64 ": %s", c->topic, c->partition, c->offset,
                     m          ? "no record at this offset"
                     : err.code ? err.msg
                                : "no such record");
        kfk_msg_free(m);
        return NULL;
    }
    return m;
}

/* Parses coordinates of a dead-letter record; a usage error if malformed. */
static int dlq_coords_arg(const char *s, arena_t *a, dlq_coords_t *c)
{
    if (!dlq_coords_parse(s, a, c))
        return shopctl_usage_error("'%s' is not <dlq-topic>:<partition>:<offset>", s);
    size_t len = strlen(c->topic);
    if (len < 5 || strcmp(c->topic + len - 4, ".dlq") != 0)
        return shopctl_usage_error("'%s' is not in a dead-letter topic (<topic>.dlq)", s);
    return SHOPCTL_OK;
}

static int dlq_show(const shopctl_cfg_t *cfg, const dlq_args_t *a)
{
    if (a->n_coords != 1)
        return shopctl_usage_error("dlq show: give one <dlq-topic>:<partition>:<offset>");
    arena_t *ar = arena_new(0);
    dlq_coords_t c;
    err_t err = ERR_INIT;
    kfk_reader_t *r = NULL;
    int rc = dlq_coords_arg(a->coords[0], ar, &c);
    if (rc != SHOPCTL_OK)
        goto out;
    if (!(r = kfk_reader_new(cfg->kafka_brokers, "shopctl", &err))) {
        rc = shopctl_fail("%s", err.msg);
        goto out;
    }
    kfk_msg_t *m = dlq_read_one(cfg, r, &c);
    if (!m) {
        rc = SHOPCTL_FAILED;
        goto out;
    }
    dlq_entry_t e;
    dlq_entry_parse(m, ar, &e);
    dlq_print_json(dlq_entry_show_json(&e, ar), a->json ? JSON_COMPACT : JSON_INDENT(2));
    kfk_msg_free(m);
out:
    kfk_reader_free(r);
    arena_free(ar);
    return rc;
}

/* ---- replay ---- */

/* The state of one replay run. */
typedef struct dlq_replay {
    const shopctl_cfg_t *cfg;
    const dlq_args_t *a;
    kfk_producer_t *p;
    const char *now; /* dlq_replayed_at, the same for every entry of the run */
    int failed;
} dlq_replay_t;

/* Prints the outcome of one entry: "replayed", "would replay" or "refused". */
static void dlq_replay_report(const dlq_replay_t *rp, const dlq_entry_t *e, const char *outcome,
                              int32_t partition, int64_t offset, const char *why)
{
    arena_t *a = arena_new(0);
    const char *at = dlq_coords_string(&e->at, a);
    if (rp->a->json) {
        json_t *j = json_pack("{s:s, s:s, s:o, s:o, s:o}", "outcome", outcome, "dlq", at,
                              "source_topic", json_pb_string(e->from.topic), "ce_id",
                              json_pb_string(e->ce_id), "ce_type", json_pb_string(e->ce_type));
        if (offset >= 0) {
            json_object_set_new(j, "partition", json_integer(partition));
            json_object_set_new(j, "offset", json_integer(offset));
        }
        if (why)
            json_object_set_new(j, "error", json_pb_string(why));
        dlq_print_json(j, JSON_COMPACT);
    } else if (offset >= 0) {
        printf("%s %s -> %s:%" PRId32 ":%" PRId64 " %s ce_id=%s\n", outcome, at, e->from.topic,
               partition, offset, e->ce_type, e->ce_id);
    } else {
        printf("%s %s -> %s %s ce_id=%s%s%s\n", outcome, at, e->from.topic, e->ce_type, e->ce_id,
               why ? ": " : "", why ? why : "");
    }
    arena_free(a);
}

/* The record to produce for entry e into *out (in `a`): original key, value and
 * headers without dlq_*, plus the replay headers. */
static void dlq_replay_msg(const dlq_replay_t *rp, const dlq_entry_t *e, arena_t *a,
                           kfk_out_msg_t *out)
{
    kfk_header_t *orig;
    size_t n_orig = kfk_msg_headers(e->m, a, &orig), n = 0;
    kfk_header_t *h = arena_calloc(a, n_orig + DLQ_REPLAY_HDRS, sizeof(*h));
    for (size_t i = 0; i < n_orig; i++)
        if (strncmp(orig[i].name, "dlq_", 4) != 0)
            h[n++] = orig[i];
    const char *extra[DLQ_REPLAY_HDRS][2] = {
        {"dlq_replayed_by", rp->a->by},
        {"dlq_replayed_at", rp->now},
        {"dlq_replay_reason", rp->a->reason},
        {"dlq_replayed_from", dlq_coords_string(&e->at, a)},
    };
    for (size_t i = 0; i < DLQ_REPLAY_HDRS; i++)
        h[n++] = (kfk_header_t){extra[i][0], extra[i][1], strlen(extra[i][1])};
    *out = (kfk_out_msg_t){.topic = e->from.topic, .headers = h, .n_headers = n};
    out->key = kfk_msg_key(e->m, &out->key_len);
    out->value = kfk_msg_value(e->m, &out->len);
}

/* Replays one entry (or says what it would do); counts failures in rp->failed. */
static void dlq_replay_one(dlq_replay_t *rp, const kfk_msg_t *m)
{
    arena_t *a = arena_new(0);
    dlq_entry_t e;
    dlq_entry_parse(m, a, &e);
    const char *incomplete = dlq_entry_incomplete(&e);
    err_t err = ERR_INIT;
    if (!*e.from.topic) {
        rp->failed++;
        dlq_replay_report(rp, &e, "refused", 0, -1,
                          "no dlq_source_topic header: not a dead letter");
        goto out;
    }
    if (incomplete && !rp->a->force) {
        rp->failed++;
        dlq_replay_report(rp, &e, "refused", 0, -1,
                          arena_sprintf(a,
                                        "%s; the replay would not be the original event "
                                        "(--force replays it as it is)",
                                        incomplete));
        goto out;
    }
    if (rp->a->dry_run) {
        dlq_replay_report(rp, &e, "would-replay", 0, -1, NULL);
        goto out;
    }
    kfk_out_msg_t out;
    dlq_replay_msg(rp, &e, a, &out);
    kfk_batch_t *b = kfk_batch_new(1);
    int32_t partition = -1;
    int64_t offset = -1;
    int rc = kfk_produce(rp->p, &out, b, &err);
    if (rc == 0 && kfk_batch_wait(b, (int)rp->cfg->timeout_ms) != 0)
        rc = err_set(&err, ERR_TIMEOUT, "not acknowledged within %" PRId64 " ms",
                     rp->cfg->timeout_ms);
    if (rc == 0)
        rc = kfk_batch_status(b, 0, &partition, &offset, &err);
    kfk_batch_free(b);
    if (rc != 0) {
        rp->failed++;
        dlq_replay_report(rp, &e, "failed", 0, -1, err.msg);
    } else {
        dlq_replay_report(rp, &e, "replayed", partition, offset, NULL);
    }
out:
    arena_free(a);
}

static int dlq_replay(const shopctl_cfg_t *cfg, const dlq_args_t *a)
{
    if (!a->by || !*a->by || !a->reason || !*a->reason)
        return shopctl_usage_error("dlq replay: --by WHO and --reason TEXT are required");
    if (a->all == (a->n_coords > 0))
        return shopctl_usage_error("dlq replay: give entries (<dlq-topic>:<partition>:<offset>) "
                                   "or --all, not both or neither");
    arena_t *ar = arena_new(0);
    dlq_replay_t rp = {.cfg = cfg, .a = a, .now = clock_rfc3339_in(ar, clock_now_us())};
    dlq_coords_t *coords = arena_calloc(ar, a->n_coords + 1, sizeof(*coords));
    err_t err = ERR_INIT;
    kfk_reader_t *r = NULL;
    int rc = SHOPCTL_OK;
    for (size_t i = 0; i < a->n_coords && rc == SHOPCTL_OK; i++)
        rc = dlq_coords_arg(a->coords[i], ar, &coords[i]);
    if (rc != SHOPCTL_OK)
        goto out;
    if (!a->dry_run && !(rp.p = kfk_producer_new(cfg->kafka_brokers, "shopctl", NULL, &err))) {
        rc = shopctl_fail("%s", err.msg);
        goto out;
    }
    if (a->all) {
        if (!(r = kfk_reader_new(cfg->kafka_brokers, "shopctl", &err))) {
            rc = shopctl_fail("%s", err.msg);
            goto out;
        }
        if ((rc = dlq_add_topics(r, a)) != SHOPCTL_OK)
            goto out;
        kfk_msg_t *m;
        while ((m = kfk_reader_next(r, (int)cfg->timeout_ms, &err)) != NULL) {
            dlq_replay_one(&rp, m);
            kfk_msg_free(m);
        }
        if ((rc = dlq_read_status(&err)) != SHOPCTL_OK)
            goto out;
    }
    for (size_t i = 0; i < a->n_coords; i++) {
        /* One reader per entry: a reader's ranges are fixed at its first read. */
        kfk_reader_t *one = kfk_reader_new(cfg->kafka_brokers, "shopctl", &err);
        kfk_msg_t *m = one ? dlq_read_one(cfg, one, &coords[i]) : NULL;
        if (!one)
            shopctl_fail("%s", err.msg);
        if (m)
            dlq_replay_one(&rp, m);
        else
            rp.failed++;
        kfk_msg_free(m);
        kfk_reader_free(one);
    }
    rc = rp.failed ? SHOPCTL_FAILED : SHOPCTL_OK;
out:
    kfk_reader_free(r);
    kfk_producer_free(rp.p);
    arena_free(ar);
    return rc;
}

int dlq_main(const shopctl_cfg_t *cfg, int argc, char **argv)
{
    static const struct {
        const char *name, *options;
        int (*run)(const shopctl_cfg_t *, const dlq_args_t *);
    } cmds[] = {
        {"list", "topic json limit", dlq_list},
        {"show", "json coords", dlq_show},
        {"replay", "topic json all dry-run force by reason coords", dlq_replay},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(argv[0], cmds[i].name) != 0)
            continue;
        dlq_args_t a;
        int rc = dlq_args_parse(argc - 1, argv + 1, cmds[i].name, cmds[i].options, &a);
        if (rc != SHOPCTL_OK)
            return rc;
        rc = cmds[i].run(cfg, &a);
        if (fflush(stdout) != 0 && errno != EPIPE)
            return shopctl_fail("writing the output: %s", strerror(errno));
        return rc;
    }
    return shopctl_usage_error("dlq: unknown subcommand '%s' (list, show or replay)", argv[0]);
}
