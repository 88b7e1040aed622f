/*
 * kfk_internal: what kfk_*.c share — building a librdkafka configuration with our
 * log and error routing, and translating librdkafka errors into err_t once.
 * Only kfk_*.c include this header (and librdkafka).
 */
#ifndef COMMON_KFK_INTERNAL_H
#define COMMON_KFK_INTERNAL_H

#include <librdkafka/rdkafka.h>

#include "common/kfk.h"

/* kfk__conf_new: a configuration with bootstrap.servers, client.id (if not NULL),
 * log_cb and error_cb routed into log.h, the process's credentials (kfk_auth_set),
 * then `defaults` and `overrides` applied in that order (both NULL or name/value pairs ending with NULL). NULL with ERR_INVALID
 * naming the property on a bad one. Owned by the caller until rd_kafka_new takes it. */
rd_kafka_conf_t *kfk__conf_new(const char *brokers, const char *client_id,
                               const char *const *defaults, const char *const *overrides,
                               err_t *err);

/* kfk__auth_failure: the last authentication or TLS failure of any client of this
 * process ("" when none since the last successful ping), for readiness messages. */
void kfk__auth_failure(char *buf, size_t len);
void kfk__auth_clear(void);

/* kfk__code: the err_code_t for a librdkafka error (kfk.h lists the mapping). */
int kfk__code(rd_kafka_resp_err_t e);

/* kfk__fail: sets err from a librdkafka error with a context prefix; returns the code. */
int kfk__fail(err_t *err, rd_kafka_resp_err_t e, const char *what);

#endif
