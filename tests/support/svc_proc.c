/*
 * svc_proc: service binaries as child processes of a test (svc_proc.h).
 */
#include "svc_proc.h"

#include <check.h>
#include <ctype.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/rpc.h"
#include "kafka_auth.h"

extern char **environ;

const char *svc_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !v[0]) {
        fprintf(stderr, "%s is not set (start the test stack and export its env)\n", name);
        exit(EXIT_FAILURE);
    }
    return v;
}

/* The stack's variable <SVC>_<what> of the service `name` names ("order-svc-1" is
 * ORDER_<what>), as "<var>=<value>" in out; "" when name is not "<svc>-svc...". */
static void svc_tls_env(const char *name, const char *var, const char *what, char *out,
                        size_t outsz)
{
    const char *end = strstr(name, "-svc");
    char stack_var[64];
    size_t n = end != NULL ? (size_t)(end - name) : 0;
    out[0] = '\0';
    if (n == 0 || n + strlen(what) + 2 > sizeof(stack_var))
        return;
    for (size_t i = 0; i < n; i++)
        stack_var[i] = (char)toupper((unsigned char)name[i]);
    snprintf(stack_var + n, sizeof(stack_var) - n, "_%s", what);
    snprintf(out, outsz, "%s=%s", var, svc_env(stack_var));
}

struct rpc_channel *svc_channel(int port)
{
    static rpc_tls_t *gateway;
    const char *plain = getenv("GRPC_PLAINTEXT");
    err_t err = ERR_INIT;
    if (gateway == NULL && !(plain && strcmp(plain, "true") == 0)) {
        gateway = rpc_tls_load(svc_env("TLS_CA_FILE"), svc_env("GATEWAY_TLS_CERT_FILE"),
                               svc_env("GATEWAY_TLS_KEY_FILE"), &err);
        ck_assert_msg(gateway, "the gateway's certificate: %s", err.msg);
    }
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    rpc_channel_t *ch = rpc_channel_new(target, &(rpc_channel_opts_t){.tls = gateway}, &err);
    ck_assert_msg(ch, "%s", err.msg);
    return ch;
}

const char *svc_program(const char *name, const char *compiled)
{
    const char *v = getenv(name);
    return v && v[0] ? v : compiled;
}

/* ---- processes ---- */

static char *svc_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    if (!buf)
        abort();
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int svc_log_count(const char *path, const char *a, const char *b)
{
    char *text = svc_slurp(path);
    int n = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n"))
        n += strstr(line, a) && (!b || strstr(line, b));
    free(text);
    return n;
}

/* The gRPC port from the "serving" line (0 while there is none) and whether the
 * consumer was assigned at least one partition. */
static void svc_proc_scan(const svc_proc_t *p, int *port, bool *assigned)
{
    char *text = svc_slurp(p->log);
    *port = 0;
    *assigned = false;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        const char *q;
        if (strstr(line, "\"msg\":\"serving\"") && (q = strstr(line, "\"grpc_port\":")))
            *port = atoi(q + strlen("\"grpc_port\":"));
        if (strstr(line, "\"msg\":\"kafka partitions assigned\"") &&
            !strstr(line, "\"partitions\":0,") && !strstr(line, "\"partitions\":0}"))
            *assigned = true;
    }
    free(text);
}

/* The number after "partitions": in a log line. */
static int svc_line_partitions(const char *line)
{
    const char *q = strstr(line, "\"partitions\":");
    return q ? atoi(q + strlen("\"partitions\":")) : 0;
}

int svc_proc_partitions(const svc_proc_t *p)
{
    char *text = svc_slurp(p->log);
    int n = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        if (strstr(line, "\"msg\":\"kafka partitions assigned\""))
            n += svc_line_partitions(line);
        else if (strstr(line, "\"msg\":\"kafka partitions revoked\""))
            n -= svc_line_partitions(line);
    }
    free(text);
    return n;
}

int svc_topic_partitions(const char *topic)
{
    char cmd[2000], line[512], conf[600] = "";
    const char *kcat_conf = getenv("KAFKA_ADMIN_KCAT_CONFIG"); /* kcat -F: as admin */
    if (kcat_conf && *kcat_conf)
        snprintf(conf, sizeof(conf), "-F '%s'", kcat_conf);
    snprintf(cmd, sizeof(cmd), "kcat %s -b '%s' -L -t '%s' -m 10 2>/dev/null", conf,
             svc_env("KAFKA_BROKERS"), topic);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (!f)
        return -1;
    char want[128];
    snprintf(want, sizeof(want), "topic \"%s\" with ", topic);
    while (fgets(line, sizeof(line), f)) {
        const char *q = strstr(line, want);
        if (n < 0 && q)
            n = atoi(q + strlen(want));
    }
    pclose(f);
    if (n <= 0)
        fprintf(stderr, "no partition count for %s from kcat\n", topic);
    return n > 0 ? n : -1;
}

void svc_wait_partitions(svc_proc_t *const *procs, size_t n, int want, int timeout_ms)
{
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
    int held;
    for (;;) {
        held = 0;
        for (size_t i = 0; i < n; i++)
            held += svc_proc_partitions(procs[i]);
        if (held == want || clock_mono_us() >= end)
            break;
        clock_sleep_ms(200);
    }
    ck_assert_msg(held == want,
                  "%s holds %d of %d partitions after %d ms: another member is in its group",
                  procs[0]->name, held, want, timeout_ms);
}

static bool svc_env_named(const char *entry, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(names[i], "=");
        if (strncmp(entry, names[i], len) == 0 && entry[len] == '=')
            return true;
    }
    return false;
}

/* The child's environment: the inherited one minus what is overridden, plus the
 * overrides. Built before fork, so the child only calls async-signal-safe functions. */
static char **svc_proc_envp(const svc_proc_t *p)
{
    const char *fixed[] = {"GRPC_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "DB_POOL_SIZE=8",
                           "SHUTDOWN_GRACE=5s", "LOG_LEVEL=info"};
    const size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
    const char *over[SVC_PROC_ENV_MAX + 14];
    size_t n_over = 0, n_env = 0;
    for (size_t i = 0; i < n_fixed; i++)
        over[n_over++] = fixed[i];
    char kafka[1100], ca[1100], cert[1100], key[1100], kafka_user[300], kafka_pass[1100];
    snprintf(kafka, sizeof(kafka), "KAFKA_BROKERS=%s", svc_env("KAFKA_BROKERS"));
    over[n_over++] = kafka;
    /* The service's own Kafka principal (KAFKA_<SVC>_USERNAME of the stack), never the
     * admin's; TLS_CA_FILE (below, or inherited) verifies the broker. */
    const char *prog = strrchr(p->binary, '/');
    if (ka_service_env(prog ? prog + 1 : p->binary, kafka_user, sizeof(kafka_user), kafka_pass,
                       sizeof(kafka_pass)) == 0) {
        over[n_over++] = kafka_user;
        over[n_over++] = kafka_pass;
    }
    svc_tls_env(p->name, "TLS_CERT_FILE", "TLS_CERT_FILE", cert, sizeof(cert));
    svc_tls_env(p->name, "TLS_KEY_FILE", "TLS_KEY_FILE", key, sizeof(key));
    if (cert[0] != '\0') {
        snprintf(ca, sizeof(ca), "TLS_CA_FILE=%s", svc_env("TLS_CA_FILE"));
        over[n_over++] = ca;
        over[n_over++] = cert;
        over[n_over++] = key;
    }
    for (size_t i = 0; p->env[i]; i++)
        over[n_over++] = p->env[i];
    while (environ[n_env])
        n_env++;
    char **envp = calloc(n_env + n_over + 1, sizeof(*envp));
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (!svc_env_named(environ[i], over, n_over))
            envp[k++] = strdup(environ[i]);
    /* later overrides win: skip an entry that a later one names again */
    for (size_t i = 0; i < n_over; i++)
        if (!svc_env_named(over[i], over + i + 1, n_over - i - 1))
            envp[k++] = strdup(over[i]);
    return envp;
}

static void svc_envp_free(char **envp)
{
    for (size_t i = 0; envp[i]; i++)
        free(envp[i]);
    free(envp);
}

static int svc_proc_launch(svc_proc_t *p)
{
    int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "cannot open %s\n", p->log);
        return -1;
    }
    char **envp = svc_proc_envp(p);
    char *argv[] = {p->binary, NULL};
    fflush(NULL);
    pid_t parent = getpid();
    p->pid = fork();
    if (p->pid == 0) {
        /* the parent may have died before prctl: then nobody would stop the child */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(127);
        if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(127);
        execve(p->binary, argv, envp);
        _exit(127);
    }
    close(fd);
    svc_envp_free(envp);
    if (p->pid < 0)
        return -1;
    p->grpc_port = 0;
    int64_t end = clock_mono_us() + (int64_t)SVC_PROC_TIMEOUT_MS * 1000;
    while (clock_mono_us() < end) {
        int status;
        bool assigned;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            fprintf(stderr, "%s exited (status %d), see %s\n", p->name, status, p->log);
            p->pid = 0;
            return -1;
        }
        svc_proc_scan(p, &p->grpc_port, &assigned);
        if (p->grpc_port && assigned)
            return 0;
        clock_sleep_ms(50);
    }
    fprintf(stderr, "%s not serving with partitions in time, see %s\n", p->name, p->log);
    return -1;
}

int svc_proc_start(svc_proc_t *p, const char *binary, const char *name, const char *const *env)
{
    *p = (svc_proc_t){0};
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->binary, sizeof(p->binary), "%s", binary);
    snprintf(p->log, sizeof(p->log), "/tmp/svc-test-%d-%s.log", (int)getpid(), name);
    for (size_t i = 0; env && env[i] && i < SVC_PROC_ENV_MAX; i++)
        p->env[i] = strdup(env[i]);
    return svc_proc_launch(p);
}

int svc_proc_restart(svc_proc_t *p)
{
    return p->pid > 0 ? -1 : svc_proc_launch(p);
}

int svc_proc_stop(svc_proc_t *p)
{
    if (!p || p->pid <= 0)
        return 0;
    kill(p->pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 600; i++) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (rc != 0)
                fprintf(stderr, "%s exited with %d, see %s\n", p->name, rc, p->log);
            return rc;
        }
        clock_sleep_ms(50);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    fprintf(stderr, "%s had to be killed, see %s\n", p->name, p->log);
    return -1;
}

void svc_proc_kill(svc_proc_t *p)
{
    if (!p || p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

void svc_proc_free(svc_proc_t *p, bool keep_log)
{
    if (!keep_log && p->log[0])
        unlink(p->log);
    for (size_t i = 0; p->env[i]; i++) {
        free(p->env[i]);
        p->env[i] = NULL;
    }
}

int svc_proc_start_db(svc_proc_t *p, const char *binary, int index, const char *db_env)
{
    const char *url = getenv(db_env);
    if (!url || !getenv("KAFKA_BROKERS")) {
        fprintf(stderr, "%s and KAFKA_BROKERS must be set\n", db_env);
        return -1;
    }
    const char *base = strrchr(binary, '/');
    char name[32], db[1100];
    snprintf(name, sizeof(name), "%s-%d", base ? base + 1 : binary, index);
    snprintf(db, sizeof(db), "DATABASE_URL=%s", url);
    const char *env[] = {db, "DB_POOL_SIZE=4", NULL};
    return svc_proc_start(p, binary, name, env);
}

int svc_proc_end(svc_proc_t *p)
{
    if (p->pid <= 0)
        return -1;
    int rc = svc_proc_stop(p);
    svc_proc_free(p, rc != 0);
    return rc;
}
