/*
 * shopctl: operator commands for the fleet (tools/shopctl/README.md). Settings come
 * from the environment like every program's (common/config.h); the command's own
 * output goes to stdout, logs (librdkafka's included) to stderr.
 */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "common/kfk.h"
#include "common/log.h"
#include "dlq.h"
#include "shopctl.h"

static const cfg_entry_t shopctl_table[] = {
    {"KAFKA_BROKERS", CFG_STR, 1, 1024, "127.0.0.1:9092", offsetof(shopctl_cfg_t, kafka_brokers),
     "Kafka bootstrap servers"},
    {"LOG_LEVEL", CFG_STR, 1, 16, "warn", offsetof(shopctl_cfg_t, log_level),
     "debug | info | warn | error (logs go to stderr)"},
    {"SHOPCTL_TIMEOUT", CFG_DURATION, 100, 3600000, "30s", offsetof(shopctl_cfg_t, timeout_ms),
     "how long a read or a produce may take before the command fails"},
};
#define SHOPCTL_N_CFG (sizeof(shopctl_table) / sizeof(shopctl_table[0]))

static void shopctl_vprint(const char *fmt, va_list ap)
{
    fputs("shopctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int shopctl_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shopctl_vprint(fmt, ap);
    va_end(ap);
    fputs("try 'shopctl --help'\n", stderr);
    return SHOPCTL_USAGE;
}

int shopctl_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shopctl_vprint(fmt, ap);
    va_end(ap);
    return SHOPCTL_FAILED;
}

static void shopctl_help(void)
{
    fputs("usage: shopctl dlq list [--topic T.dlq]... [--json] [--limit N]\n"
          "       shopctl dlq show [--json] <dlq-topic>:<partition>:<offset>\n"
          "       shopctl dlq replay (<coords>... | --all [--topic T.dlq]...) --by WHO\n"
          "                          --reason TEXT [--dry-run] [--force] [--json]\n"
          "\n"
          "Dead letters of the saga (docs/dlq.md). Without --topic, every <topic>.dlq of\n"
          "the fleet manifest (deploy/fleet.conf). list and show only read (no consumer\n"
          "group, nothing committed); replay produces each entry back to its source topic\n"
          "with its ce_id, so the consumers' inbox skips what was applied already.\n"
          "Exit status: 0 done, 1 something failed, 2 bad usage or setting.\n"
          "\n"
          "Settings (environment):\n",
          stdout);
    cfg_usage_print(stdout, shopctl_table, SHOPCTL_N_CFG);
    fputs("\nKafka login (an operator's: admin on the local stack, docs/dlq.md):\n", stdout);
    cfg_usage_print(stdout, kfk_auth_cfg_table, kfk_auth_cfg_n);
}

int main(int argc, char **argv)
{
    /* Output piped into head: a write fails with EPIPE instead of killing us. */
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        shopctl_help();
        return SHOPCTL_OK;
    }
    if (argc < 3 || strcmp(argv[1], "dlq") != 0)
        return shopctl_usage_error(argc < 2 ? "no command given" : "unknown command '%s'",
                                   argc < 2 ? "" : argv[1]);
    shopctl_cfg_t cfg;
    err_t err = ERR_INIT;
    log_level_t level;
    if (cfg_load(shopctl_table, SHOPCTL_N_CFG, &cfg, &err) < 0)
        return shopctl_usage_error("%s", err.msg);
    if (log_level_parse(cfg.log_level, &level) < 0)
        return shopctl_usage_error("LOG_LEVEL: must be debug, info, warn or error, got \"%s\"",
                                   cfg.log_level);
    if (kfk_brokers_check(cfg.kafka_brokers, &err) < 0)
        return shopctl_usage_error("KAFKA_BROKERS: %s", err.msg);
    kfk_auth_t auth;
    if (cfg_load(kfk_auth_cfg_table, kfk_auth_cfg_n, &auth, &err) < 0)
        return shopctl_usage_error("%s", err.msg);
    if (kfk_auth_set(&auth, &err) < 0)
        return shopctl_usage_error("KAFKA_USERNAME: %s (set KAFKA_PASSWORD or KAFKA_PASSWORD_FILE)",
                                   err.msg);
    log_set_fd(2);
    log_init("shopctl", level);
    return dlq_main(&cfg, argc - 2, argv + 2);
}
