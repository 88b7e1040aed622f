/*
 * metrics_process: the standard process_* metrics and <program>'s build info
 * (metrics.h: metrics_process_init).
 *
 * Everything is read from /proc/self when /metrics is rendered, never on a request
 * path: /proc/self/stat for CPU time and memory (one small read per metric), the
 * entries of /proc/self/fd for the open descriptors. The start time is computed
 * once, from the process's start in clock ticks after boot and the boot time in
 * /proc/stat.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/metrics.h"

#ifndef SHOP_VERSION
#define SHOP_VERSION "unknown"
#endif
#ifndef SHOP_COMMIT
#define SHOP_COMMIT "unknown"
#endif

/* Fields of /proc/self/stat after the command name (proc(5)). */
typedef struct {
    unsigned long utime, stime; /* clock ticks */
    unsigned long long starttime;
    unsigned long vsize; /* bytes */
    long rss;            /* pages */
} metrics_proc_stat_t;

static int metrics_proc_stat(metrics_proc_stat_t *st)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name is in parentheses and may hold spaces: start after the last ')'. */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    int got = sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                     "%*d %llu %lu %ld",
                     &st->utime, &st->stime, &st->starttime, &st->vsize, &st->rss);
    return got == 5 ? 0 : -1;
}

static double metrics_proc_cpu(void *ud)
{
    (void)ud;
    metrics_proc_stat_t st;
    if (metrics_proc_stat(&st) != 0)
        return 0;
    return (double)(st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK);
}

static double metrics_proc_rss(void *ud)
{
    (void)ud;
    metrics_proc_stat_t st;
    return metrics_proc_stat(&st) == 0 ? (double)st.rss * (double)sysconf(_SC_PAGESIZE) : 0;
}

static double metrics_proc_vsize(void *ud)
{
    (void)ud;
    metrics_proc_stat_t st;
    return metrics_proc_stat(&st) == 0 ? (double)st.vsize : 0;
}

static double metrics_proc_open_fds(void *ud)
{
    (void)ud;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    double n = -1; /* the descriptor of d itself */
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static double metrics_proc_max_fds(void *ud)
{
    (void)ud;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    return (double)rl.rlim_cur;
}

/* Seconds since the epoch at which the process started, or 0 if /proc says nothing. */
static double metrics_proc_start_time(void)
{
    metrics_proc_stat_t st;
    if (metrics_proc_stat(&st) != 0)
        return 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    char line[256];
    unsigned long long btime = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "btime %llu", &btime) == 1)
            break;
    }
    fclose(f);
    return (double)btime + (double)st.starttime / (double)sysconf(_SC_CLK_TCK);
}

void metrics_process_init(const char *program)
{
    metrics_counter_fn("process_cpu_seconds_total", "User and system CPU time spent in seconds",
                       NULL, metrics_proc_cpu, NULL);
    metrics_gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes", NULL,
                     metrics_proc_rss, NULL);
    metrics_gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes", NULL,
                     metrics_proc_vsize, NULL);
    metrics_gauge_fn("process_open_fds", "Number of open file descriptors", NULL,
                     metrics_proc_open_fds, NULL);
    metrics_gauge_fn("process_max_fds", "Maximum number of open file descriptors", NULL,
                     metrics_proc_max_fds, NULL);
    metrics_gauge_set(metrics_gauge("process_start_time_seconds",
                                    "Start time of the process since the epoch in seconds", NULL),
                      metrics_proc_start_time());
    metrics_gauge_set(metrics_gauge("shop_build_info",
                                    "Always 1: the program, version and commit of this build",
                                    (const char *[]){"program", program, "version", SHOP_VERSION,
                                                     "commit", SHOP_COMMIT, NULL}),
                      1);
}
