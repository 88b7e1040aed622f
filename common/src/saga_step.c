/*
 * saga_step: what every service's saga handlers share (saga.h, "helpers for handlers"):
 * the order id of an event, the opening checks, emitting the answer through the outbox
 * and naming the shared locks.
 */
#include <stdint.h>

#include "common/outbox.h"
#include "common/saga.h"
#include "common/saga_check.h"
#include "common/text.h"
#include "common/uuid.h"

int saga_order_id(arena_t *a, const saga_event_t *ev, const char *raw, const char **out, err_t *err)
{
    if (!(*out = uuid_canon(a, raw)))
        return err_set(err, ERR_INVALID, "%s: order_id is not a uuid", ev->ce.type);
    return 0;
}

int saga_open(arena_t *a, const saga_event_t *ev, const char *raw, const char **order_id,
              err_t *err)
{
    if (saga_order_id(a, ev, raw, order_id, err) != 0 || saga_check(ev->msg, err) != 0)
        return err->code;
    return 0;
}

/* msg's order_id field (every saga event has one, a string), or NULL. */
static const char *saga_msg_order_id(const ProtobufCMessage *msg)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "order_id");
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return *(char *const *)(const void *)((const uint8_t *)msg + f->offset);
}

int saga_emit(db_conn_t *tx, arena_t *a, const char *topic, const ProtobufCMessage *msg,
              const char *traceparent, err_t *err)
{
    const char *key = saga_msg_order_id(msg);
    if (!key)
        return err_set(err, ERR_INVALID, "%s has no order_id", msg->descriptor->name);
    return outbox_enqueue(tx, a, topic, key, msg, traceparent, err);
}

const char *saga_lock_name(arena_t *a, const char *kind, const char *id)
{
    return text_ascii_lower(a, arena_sprintf(a, "%s:%s", kind, id));
}
