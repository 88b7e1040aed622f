#!/usr/bin/python3
"""HA=1 PostgreSQL: a service's primary and its synchronous standby under pg_auto_failover
(deploy/local/pg.sh, docs/ha-postgres.md), against an HA stack that is already running
(STACK_PROFILE / STACK_PORT_BASE from the environment; everything else from
`stack.sh env`).

For one service (HA_PG_SERVICE, default order):
  1. both nodes serve (the monitor: a primary and a secondary) and the standby is
     synchronous and streams over TLS;
  2. a writer commits numbered rows one at a time through the service's multi-host URL
     (psql, as the service's role) while the primary node is SIGKILLed (stack.sh kill):
     writes succeed again on the promoted standby within HA_PG_MAX_OUTAGE seconds, and
     every acknowledged row is there;
  3. the old primary started again (stack.sh start) rejoins as a synchronous secondary;
  4. the (new) primary is frozen for HA_PG_FREEZE seconds (stack.sh freeze): writes
     resume, every acknowledged row is there, the monitor never shows two primaries and
     the stack settles with one primary and a synchronous standby.

Prints what it checks; exits non-zero on any failure; starts again whatever it killed.
"""

import os
import shlex
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACK_SH = os.path.join(ROOT, "deploy", "local", "stack.sh")
SVC = os.environ.get("HA_PG_SERVICE", "order")
MAX_OUTAGE = float(os.environ.get("HA_PG_MAX_OUTAGE", "20"))
FREEZE_S = float(os.environ.get("HA_PG_FREEZE", "10"))
PRIMARY_STATES = ("single", "primary", "wait_primary")


class Failed(Exception):
    pass


def log(msg):
    print(f"[test_ha_postgres {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv, timeout, env=None, check=True):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-4:])
        raise Failed(f"{' '.join(argv[:3])}: exit {p.returncode}: {tail}")
    return p


def stack(*args, timeout=300):
    return run([STACK_SH, *args], timeout).stdout


class Stack:
    def __init__(self):
        self.env = {}
        for line in stack("env", timeout=60).splitlines():
            name, sep, value = line.partition("=")
            if sep:
                self.env[name] = shlex.split(value)[0] if value else value
        if self.env.get("HA") != "1":
            raise Failed("the stack is not HA=1 (stack.sh env says HA=%s)" % self.env.get("HA"))
        self.data = self.env["STACK_DATA"]
        self.url = self.env[f"{SVC.upper()}_DATABASE_URL"]
        self.ca = self.env["TLS_CA_FILE"]
        with open(os.path.join(self.data, "secrets", "pg-superuser")) as f:
            self.su_password = f.read().strip()
        parts = stack("parts", timeout=60).split()
        self.nodes = sorted(p for p in parts if p.startswith(f"postgres/{SVC}/"))
        if len(self.nodes) != 2 or "pg-monitor" not in parts:
            raise Failed(f"expected pg-monitor and two nodes of {SVC}, parts are {parts}")
        # The ports, from the URL's host list (127.0.0.1:P1,127.0.0.1:P2), in node order.
        hosts = self.url.split("@", 1)[1].split("/", 1)[0].split(",")
        self.ports = {f"postgres/{SVC}/{k + 1}": int(h.rsplit(":", 1)[1])
                      for k, h in enumerate(hosts)}
        if len(self.ports) != 2:
            raise Failed(f"{SVC}_DATABASE_URL does not name two hosts: {hosts}")
        self.monitor_port = None

    def su_psql(self, port, sql, db="postgres", timeout=15):
        """Rows (lists of strings) of sql as the superuser on one server; raises Failed."""
        env = dict(os.environ, PGPASSWORD=self.su_password, PGSSLMODE="verify-full",
                   PGSSLROOTCERT=self.ca, PGCONNECT_TIMEOUT="3")
        p = run(["psql", "-X", "-q", "-tA", "-F", "|", "-v", "ON_ERROR_STOP=1",
                 "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-c", sql],
                timeout, env=env)
        return [line.split("|") for line in p.stdout.splitlines() if line]

    def monitor_states(self):
        """{part: (reported, goal)} as the monitor has them."""
        if self.monitor_port is None:
            self.monitor_port = int(self.env.get("PG_MONITOR_PORT") or self._monitor_port())
        rows = self.su_psql(self.monitor_port,
                            "SELECT nodeport, reportedstate, goalstate FROM pgautofailover.node"
                            f" WHERE formationid = '{SVC}'", db="pg_auto_failover")
        by_port = {p: n for n, p in self.ports.items()}
        return {by_port[int(r[0])]: (r[1], r[2]) for r in rows if int(r[0]) in by_port}

    def _monitor_port(self):
        for line in stack("status", timeout=60).splitlines():
            f = line.split()
            if f and f[0] == "pg-monitor":
                return f[1].rsplit(":", 1)[1]
        raise Failed("stack.sh status names no pg-monitor")

    def primary(self):
        return stack("primary", SVC, timeout=60).strip()

    def service_sql(self, sql, timeout=15):
        """sql through the service's multi-host URL, as the service's role."""
        return run(["psql", self.url, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   timeout)


def kill(part):
    """stack.sh kill PART; returns (when its SIGKILL went out, when it returned): it
    returns only once every process of the part is reaped, which may take seconds."""
    p = subprocess.Popen([STACK_SH, "kill", part], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    t_sig = None
    for line in p.stderr:
        if "SIGKILL" in line and t_sig is None:
            t_sig = time.monotonic()
    if p.wait(120) != 0 or t_sig is None:
        raise Failed(f"stack.sh kill {part} failed (exit {p.returncode})")
    return t_sig, time.monotonic()


def wait_until(what, fn, timeout, every=0.5):
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            ok, last = fn()
            if ok:
                return time.monotonic() - t0
        except (Failed, subprocess.TimeoutExpired) as e:
            last = str(e)
        time.sleep(every)
    raise Failed(f"{what}: not within {timeout}s (last: {last})")


def check_sync(st):
    """Both nodes serve (a primary, a secondary); the standby streams synchronously over
    TLS 1.3. Returns (primary part, standby part)."""
    states = st.monitor_states()
    prim = [n for n, (r, g) in states.items() if r == g == "primary"]
    sec = [n for n, (r, g) in states.items() if r == g == "secondary"]
    if len(prim) != 1 or len(sec) != 1:
        return False, f"monitor: {states}"
    rows = st.su_psql(st.ports[prim[0]],
                      "SELECT r.application_name, r.state, r.sync_state, s.ssl, s.version,"
                      " current_setting('synchronous_standby_names')"
                      " FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)")
    good = [r for r in rows if r[1] == "streaming" and r[2] in ("sync", "quorum")
            and r[3] == "t" and r[4] == "TLSv1.3" and r[5] not in ("", "*")]
    if len(good) != 1:
        return False, f"pg_stat_replication on {prim[0]}: {rows}"
    return True, (prim[0], sec[0], good[0])


class Writer(threading.Thread):
    """Inserts n = 1, 2, ... one statement (one commit) at a time through the service's
    URL; records which were acknowledged and when writes failed."""

    def __init__(self, st, table):
        super().__init__(daemon=True)
        self.st, self.table = st, table
        self.n = 0
        self.acked = []  # (n, monotonic time)
        self.failed = []  # (n, monotonic time, message)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.n += 1
            try:
                p = self.st.service_sql(f"INSERT INTO {self.table} (n) VALUES ({self.n})",
                                        timeout=20)
                self.acked.append((self.n, time.monotonic()))
            except (Failed, subprocess.TimeoutExpired) as e:
                self.failed.append((self.n, time.monotonic(), str(e)[-160:]))
                time.sleep(0.05)
            else:
                del p
                time.sleep(0.02)

    def first_ack_after(self, t):
        return next((a for n, a in self.acked if a > t), None)

    def finish(self):
        self.stop.set()
        self.join(60)


def check_no_loss(st, table, writer, what):
    rows = st.service_sql(f"SELECT n FROM {table}", timeout=30).stdout.split()
    have = {int(x) for x in rows}
    acked = {n for n, _ in writer.acked}
    lost = sorted(acked - have)
    log(f"{what}: {len(acked)} rows acknowledged, {len(have)} present,"
        f" {len(writer.failed)} attempts failed, lost: {lost[:20]}")
    if lost:
        raise Failed(f"{what}: {len(lost)} acknowledged rows lost: {lost[:20]}")


def main():
    st = Stack()
    killed = set()
    table = f"ha_pg_test_{os.getpid()}"
    failures = []
    try:
        log(f"{SVC}: nodes {st.nodes}, URL hosts {st.ports}")
        # 1. healthy and synchronous
        wait_until("both nodes serving, standby synchronous", lambda: check_sync(st), 120)
        prim, sec, repl = check_sync(st)[1]
        log(f"ok: primary {prim}, secondary {sec}; pg_stat_replication {repl[:5]},"
            f" synchronous_standby_names = '{repl[5]}'")
        if st.primary() != prim:
            raise Failed(f"stack.sh primary {SVC} says {st.primary()}, the monitor {prim}")
        log(f"ok: stack.sh primary {SVC} = {prim}")
        st.service_sql(f"CREATE TABLE {table} (n int PRIMARY KEY, at timestamptz DEFAULT now())")

        # 2. SIGKILL of the primary while a writer commits
        w = Writer(st, table)
        w.start()
        time.sleep(3)
        if not w.acked:
            raise Failed(f"the writer committed nothing in 3 s: {w.failed[-3:]}")
        log(f"kill {prim} (writer at n={w.n}, {len(w.acked)} acknowledged)")
        killed.add(prim)
        t_kill, t_killed = kill(prim)
        t_promoted = None

        def promoted_and_writing():  # both, noting when the monitor first names the standby
            nonlocal t_promoted
            if t_promoted is None:
                p = run([STACK_SH, "primary", SVC], 60, check=False).stdout.strip()
                t_promoted = time.monotonic() if p == sec else None
            return (t_promoted is not None and w.first_ack_after(t_killed) is not None,
                    f"n={w.n}, monitor names {sec}: {t_promoted is not None}")

        wait_until("the standby promoted and writes succeeding on it", promoted_and_writing, 90,
                   every=0.1)
        outage = w.first_ack_after(t_killed) - t_kill
        time.sleep(2)
        w.finish()
        log(f"measured: SIGKILL -> first acknowledged write on the promoted standby {outage:.1f} s"
            f" (stack.sh kill returned {t_killed - t_kill:.1f} s after its SIGKILL, once every"
            f" process was reaped); the monitor named {sec} primary"
            f" {t_promoted - t_kill:.1f} s after the SIGKILL")
        if outage > MAX_OUTAGE:
            failures.append(f"write outage {outage:.1f} s > {MAX_OUTAGE} s")
        check_no_loss(st, table, w, "after the kill")
        log(f"ok: no acknowledged row lost over the failover")

        # 3. the old primary rejoins as a synchronous secondary
        t0 = time.monotonic()
        stack("start", prim, timeout=300)
        killed.discard(prim)
        wait_until("the old primary rejoins as a synchronous secondary",
                   lambda: (lambda r: (r[0] and r[1][1] == prim, r[1]))(check_sync(st)), 120)
        log(f"ok: {prim} is a synchronous secondary again, {time.monotonic() - t0:.1f} s after"
            f" stack.sh start {prim}")

        # 4. a frozen primary
        prim, sec = sec, prim
        w = Writer(st, f"{table}")
        w.n = 1000000
        w.start()
        time.sleep(2)
        samples = []
        sampling = threading.Event()

        def sample():  # the monitor's view while the primary is frozen and after
            while not sampling.is_set():
                try:
                    s = st.monitor_states()
                    samples.append(s)
                except (Failed, subprocess.TimeoutExpired):
                    pass
                time.sleep(0.3)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        log(f"freeze {prim} for {FREEZE_S:g} s (writer at n={w.n})")
        t_freeze = time.monotonic()
        stack("freeze", prim, str(FREEZE_S), timeout=120)
        t_thaw = time.monotonic()
        wait_until("writes resume after the freeze",
                   lambda: (w.first_ack_after(t_thaw) is not None, f"n={w.n}"), 90, every=0.1)
        resumed = w.first_ack_after(t_thaw)
        stalls = [b - a for (_, a), (_, b) in zip(w.acked, w.acked[1:]) if b > t_freeze]
        log(f"measured: writes resumed {resumed - t_thaw:.1f} s after SIGCONT; longest gap"
            f" between acknowledged writes {max(stalls, default=0):.1f} s")
        time.sleep(2)
        w.finish()
        settle = wait_until("one primary and a synchronous standby after the freeze",
                            lambda: check_sync(st), 180)
        sampling.set()
        sampler.join(10)
        # The monitor never assigns two primaries. (A frozen primary's *reported* state
        # stays "primary" until it wakes and learns it was demoted: not a second primary.
        # What it may still take after SIGCONT cannot be acknowledged, its synchronous
        # standby being gone: the no-loss check below would see such a row missing.)
        double = [s for s in samples
                  if sum(1 for r, g in s.values() if g in PRIMARY_STATES) > 1]
        now_primary = st.primary()
        log(f"after the freeze: primary {now_primary} ({'failover' if now_primary != prim else 'no failover'}),"
            f" settled in {settle:.1f} s; {len(samples)} monitor samples, {len(double)} with two"
            f" nodes assigned a primary state")
        if double:
            failures.append(f"the monitor assigned two primaries: {double[:3]}")
        roles = []
        for part, port in st.ports.items():
            r = st.su_psql(port, "SELECT pg_is_in_recovery()")
            roles.append((part, r[0][0]))
        writable = [p for p, r in roles if r == "f"]
        if len(writable) != 1:
            failures.append(f"not exactly one server out of recovery: {roles}")
        else:
            log(f"ok: one server out of recovery ({writable[0]}), the other a standby")
        check_no_loss(st, table, w, "after the freeze")
        log("ok: no acknowledged row lost over the freeze")
    except Failed as e:
        failures.append(str(e))
    finally:
        for part in sorted(killed):
            log(f"starting {part} again")
            try:
                stack("start", part, timeout=300)
            except (Failed, subprocess.TimeoutExpired) as e:
                failures.append(f"cannot start {part} again: {e}")
        try:
            st.service_sql(f"DROP TABLE IF EXISTS {table}", timeout=30)
        except (Failed, subprocess.TimeoutExpired):
            pass
    for f in failures:
        log(f"FAIL: {f}")
    log("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
