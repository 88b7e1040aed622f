/*
 * dlq: `shopctl dlq list|show|replay` (docs/dlq.md).
 */
#ifndef SHOPCTL_DLQ_H
#define SHOPCTL_DLQ_H

#include "shopctl.h"

/* dlq_main: runs the subcommand argv[0] with its arguments; an exit status. */
int dlq_main(const shopctl_cfg_t *cfg, int argc, char **argv);

#endif
