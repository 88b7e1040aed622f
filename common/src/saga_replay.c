/*
 * saga_replay: the consumer's record of events an operator put back from a
 * dead-letter topic (shopctl dlq replay, docs/dlq.md). The replay headers say who,
 * when, why and from where; the service log is where that is kept, next to the
 * outcome (ok, or duplicate when the inbox had seen the ce_id already).
 */
#include "common/log.h"
#include "saga_internal.h"

/* A header's value as a string in `a`, or "" when absent. */
static const char *saga_replay_header(const kfk_msg_t *m, const char *name, arena_t *a)
{
    size_t len;
    const void *v = kfk_msg_header(m, name, &len);
    return v ? arena_strndup(a, v, len) : "";
}

void saga__replay_log(const kfk_msg_t *m, const saga_event_t *ev, const char *outcome, arena_t *a)
{
    size_t len;
    if (!kfk_msg_header(m, "dlq_replayed_by", &len))
        return;
    LOG_INFO("replayed event handled", LOG_STR("ce_id", ev->ce.id ? ev->ce.id : ""),
             LOG_STR("topic", ev->topic), LOG_INT("partition", ev->partition),
             LOG_INT("offset", ev->offset), LOG_STR("ce_type", ev->ce.type ? ev->ce.type : ""),
             LOG_STR("outcome", outcome),
             LOG_STR("replayed_by", saga_replay_header(m, "dlq_replayed_by", a)),
             LOG_STR("replayed_at", saga_replay_header(m, "dlq_replayed_at", a)),
             LOG_STR("replay_reason", saga_replay_header(m, "dlq_replay_reason", a)),
             LOG_STR("replayed_from", saga_replay_header(m, "dlq_replayed_from", a)));
}
