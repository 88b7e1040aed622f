/*
 * upstream: the table's rows and its channels (upstream.h).
 */
#include "upstream.h"

#include <stddef.h>

#include "shop/order/v1/order_service.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"

const upstream_def_t upstream_defs[UPSTREAM_N] = {
#define UPSTREAM__DEF(id, name, env, addr, svc, help) [UPSTREAM_##id] = {name, env, addr, &svc},
    UPSTREAM_TABLE(UPSTREAM__DEF)
#undef UPSTREAM__DEF
};

int upstream_open(rpc_channel_t *out[UPSTREAM_N], const char *const addrs[UPSTREAM_N],
                  const rpc_tls_t *tls, err_t *err)
{
    for (size_t i = 0; i < UPSTREAM_N; i++)
        if ((out[i] = rpc_channel_new(addrs[i], &(rpc_channel_opts_t){.tls = tls}, err)) == NULL)
            return err->code;
    return 0;
}

void upstream_close(rpc_channel_t *ch[UPSTREAM_N])
{
    for (size_t i = 0; i < UPSTREAM_N; i++) {
        rpc_channel_free(ch[i]);
        ch[i] = NULL;
    }
}
