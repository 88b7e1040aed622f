/*
 * dlq_entry: one dead-letter record as the saga consumer writes it (common/saga.h,
 * "Dead-lettering"): where it is, where it came from, why it failed, and its event,
 * rendered as one human line, as a JSON summary (list) or in full (show).
 */
#ifndef SHOPCTL_DLQ_ENTRY_H
#define SHOPCTL_DLQ_ENTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/arena.h"
#include "common/kfk.h"

/* Coordinates of a record: topic:partition:offset. */
typedef struct dlq_coords {
    const char *topic;
    int32_t partition;
    int64_t offset;
} dlq_coords_t;

/* A parsed entry; strings live in the arena given to dlq_entry_parse, "" when the
 * header is absent. */
typedef struct dlq_entry {
    const kfk_msg_t *m; /* borrowed */
    dlq_coords_t at;    /* the dead-letter record */
    dlq_coords_t from;  /* the original (dlq_source_topic, dlq_partition, dlq_offset);
                           from.topic "" and offsets -1 when the headers lack them */
    int64_t ts_ms;      /* the record's timestamp, -1 if none */
    const char *ce_type, *ce_id, *error, *code, *attempts, *group;
    bool value_truncated, headers_omitted, key_omitted;
} dlq_entry_t;

/* dlq_coords_parse: "topic:partition:offset" (the topic may hold dots, not colons)
 * into *out, the topic copied into `a`. false when malformed. */
bool dlq_coords_parse(const char *s, arena_t *a, dlq_coords_t *out);

/* dlq_entry_parse: reads m's headers into *e. */
void dlq_entry_parse(const kfk_msg_t *m, arena_t *a, dlq_entry_t *e);

/* dlq_entry_incomplete: why the entry does not hold the whole original (value cut,
 * or a bare copy without value and headers), or NULL when it does. */
const char *dlq_entry_incomplete(const dlq_entry_t *e);

/* dlq_entry_print_line: one line for people: coordinates, time, type, ce_id, the
 * source, code, attempts, group, flags and the error, control characters replaced. */
void dlq_entry_print_line(FILE *out, const dlq_entry_t *e);

/* dlq_entry_json: the entry's summary (list --json). New reference. */
json_t *dlq_entry_json(const dlq_entry_t *e);

/* dlq_entry_show_json: the summary plus the key, every header and the payload as
 * JSON by its ce_type, or base64url with the reason it is not decoded (show). */
json_t *dlq_entry_show_json(const dlq_entry_t *e, arena_t *a);

/* dlq_coords_string: "topic:partition:offset" in `a`. */
const char *dlq_coords_string(const dlq_coords_t *c, arena_t *a);

#endif
