#!/usr/bin/python3
"""Redis HA (docs/ha-redis.md) against an already running HA stack with its fleet
(STACK_PROFILE and STACK_PORT_BASE from the environment; HA=1, FLEET=1).

What it checks, in this order, printing each step:
  1. the topology: redis/1 and redis/2 are one master and its replica, three Sentinels
     agree on the master (quorum 2), and `stack.sh redis-master` names it; the ACL
     users are confined (the gateway may only ask a Sentinel for the master's address,
     the default user is off, the replication user reads no key);
  2. users registered and logged in through the gateway (REDIS_URL's user, its pool
     following the Sentinels);
  3. SIGKILL of the master (stack.sh kill $(stack.sh redis-master)) while every user
     keeps calling GET /users/me every 0.1 s (a session check in Redis on every call): the gap
     until calls succeed again is measured and bounded, no user is logged out (a
     401 is a lost session, also for the login answered just before the kill), and
     the Sentinels name the other server;
  4. the old master started again comes back as the new master's replica, in sync;
  5. a freeze (SIGSTOP, SIGCONT 4 s later) of the master: the gateway answers again,
     one master and one replica afterwards, users still logged in;
  6. a Sentinel killed: no call fails meanwhile; it is started again.
Whatever it killed is started again before it exits (also on a failure), so the next
test finds a whole stack. Exit status 0 when every check held, 1 otherwise.

Settings (environment): HA_REDIS_MAX_GAP (seconds; 15) bounds the gap of step 3 and
the recovery of step 5.
"""

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACK_SH = os.path.join(ROOT, "deploy", "local", "stack.sh")
MAX_GAP = float(os.environ.get("HA_REDIS_MAX_GAP", "15"))

failures = []


def say(msg):
    print(msg, flush=True)


def check(ok, what):
    say(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)
    return ok


def stack(*args, timeout=180):
    p = subprocess.run([STACK_SH, *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"stack.sh {' '.join(args)}: exit {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip()[-400:]}")
    return p.stdout.strip()


def stack_env():
    env = {}
    for line in stack("env", timeout=60).splitlines():
        name, sep, value = line.partition("=")
        if sep:
            env[name] = shlex.split(value)[0] if value else value
    return env


# ---- Redis's protocol, enough for AUTH and a few commands (stdlib only) ----

class RespError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        return RespError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis(port, user, password, *cmd, timeout=3.0):
    """One command as user at 127.0.0.1:port; the reply, a RespError for an error reply
    (also a refused AUTH); raises OSError when the server cannot be reached."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")

        def send(*args):
            out = [f"*{len(args)}\r\n".encode()]
            for a in args:
                b = str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(b), b))
            s.sendall(b"".join(out))
            return _read_reply(f)

        if user is not None:
            r = send("AUTH", user, password)
            if isinstance(r, RespError):
                return r
        return send(*cmd)


def read_secret(path):
    with open(path) as f:
        return f.read().strip()


# ---- the gateway ----

class Gateway:
    def __init__(self, url):
        self.base = url.rstrip("/") + "/api/v1"

    def call(self, method, path, body=None, token=None, timeout=10.0):
        """(status, JSON body or None); status 0 for a network error."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            return e.code, doc
        except (OSError, urllib.error.URLError):
            return 0, None

    def call_until(self, method, path, body=None, seconds=90.0):
        """call() again after a network error, a 5xx or a 429 (the login and register
        limits count per client address: other tests of the run log in too), until
        `seconds` have passed; the last (status, body)."""
        end = time.monotonic() + seconds
        while True:
            status, doc = self.call(method, path, body)
            if (status != 0 and status != 429 and status < 500) or time.monotonic() > end:
                return status, doc
            time.sleep(2.0 if status == 429 else 0.5)


class Poller:
    """Threads calling GET /users/me as each user, every `period` s, recording
    (monotonic time, status) per call."""

    # 0.1 s apart: a user's requests stay far under USER_RATE_LIMIT (600 a minute).
    def __init__(self, gw, tokens, period=0.1):
        self.gw, self.tokens, self.period = gw, tokens, period
        self.calls = []
        self.mu = threading.Lock()
        self.stop_ = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                        for t in tokens]

    def _run(self, token):
        while not self.stop_.is_set():
            t0 = time.monotonic()
            status, _ = self.gw.call("GET", "/users/me", token=token, timeout=10)
            with self.mu:
                self.calls.append((t0, time.monotonic(), status))
            time.sleep(self.period)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_.set()
        for t in self.threads:
            t.join(15)

    def snapshot(self):
        with self.mu:
            return list(self.calls)

    def ok_since(self, t, seconds):
        """Every call started after t succeeded for at least `seconds`, and some did."""
        calls = [c for c in self.snapshot() if c[0] >= t]
        return bool(calls) and calls[-1][1] - calls[0][0] >= seconds and \
            all(c[2] == 200 for c in calls)


def wait_until(pred, seconds, step=0.1):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def gap_after(calls, t_fault):
    """(gap, failed calls, statuses): the time from the fault to the end of the first
    call that succeeded after the last failed call started after it (0 when none
    failed), the number of failed calls and their statuses."""
    after = sorted(c for c in calls if c[0] >= t_fault)
    failed = [c for c in after if c[2] != 200]
    if not failed:
        return 0.0, 0, {}
    last_bad = failed[-1][0]
    ok_after = [c for c in after if c[0] > last_bad and c[2] == 200]
    end = ok_after[0][1] if ok_after else float("inf")
    statuses = {}
    for c in failed:
        statuses[c[2]] = statuses.get(c[2], 0) + 1
    return end - t_fault, len(failed), statuses


class Redis:
    """The stack's Redis parts, as the admin sees them."""

    def __init__(self, env):
        self.admin = read_secret(env["REDIS_ADMIN_PASSWORD_FILE"])
        self.gw_password = read_secret(env["REDIS_PASSWORD_FILE"])
        self.sentinels = [int(a.rsplit(":", 1)[1]) for a in env["REDIS_SENTINELS"].split(",")]
        self.name = env.get("REDIS_MASTER_NAME", "shop")
        port = int(env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        self.ports = {"redis/1": port, "redis/2": port + 1}
        self.secrets = os.path.dirname(env["REDIS_ADMIN_PASSWORD_FILE"])

    def cmd(self, port, *args):
        try:
            return redis(port, "admin", self.admin, *args)
        except OSError as e:
            return e

    def role(self, part):
        r = self.cmd(self.ports[part], "ROLE")
        return r[0] if isinstance(r, list) else None

    def sentinel_master_ports(self):
        out = []
        for p in self.sentinels:
            r = self.cmd(p, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            out.append(int(r[1]) if isinstance(r, list) else None)
        return out

    def part_of(self, port):
        return next((k for k, v in self.ports.items() if v == port), None)

    def replica_in_sync(self, part, master_part):
        info = self.cmd(self.ports[part], "INFO", "replication")
        if not isinstance(info, str):
            return False
        kv = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return kv.get("role") == "slave" and kv.get("master_link_status") == "up" and \
            kv.get("master_port") == str(self.ports[master_part])

    def settled(self):
        """(master part, replica part) when the Sentinels agree, the master says so and
        the other is its replica in sync; else None."""
        ports = self.sentinel_master_ports()
        if None in ports or len(set(ports)) != 1:
            return None
        m = self.part_of(ports[0])
        if m is None or self.role(m) != "master":
            return None
        r = "redis/2" if m == "redis/1" else "redis/1"
        return (m, r) if self.replica_in_sync(r, m) else None


def restart_missing(rd, killed):
    """Starts every Redis part this test killed that is not running."""
    for part in killed:
        status = stack("status", timeout=60)
        line = next((ln for ln in status.splitlines() if ln.startswith(part + " ")), "")
        if " up" not in line:
            say(f"restoring {part}")
            try:
                stack("start", part)
            except Exception as e:  # noqa: BLE001 - report and go on restoring
                check(False, f"restore {part}: {e}")


def step_topology(rd):
    say("1. topology and users")
    s = rd.settled()
    check(s is not None, f"one master, its replica in sync, three Sentinels agree: {s}")
    if s is None:
        return None
    check(stack("redis-master") == s[0], f"stack.sh redis-master names {s[0]}")
    for p in rd.sentinels:
        r = rd.cmd(p, "SENTINEL", "MASTER", rd.name)
        kv = dict(zip(r[::2], r[1::2])) if isinstance(r, list) else {}
        check(kv.get("quorum") == "2" and kv.get("num-other-sentinels") == "2",
              f"Sentinel {p}: quorum 2, sees the two others ({kv.get('num-other-sentinels')})")
    sp = rd.sentinels[0]
    r = redis(sp, "gateway", rd.gw_password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", rd.name)
    check(isinstance(r, list) and int(r[1]) == rd.ports[s[0]],
          "the gateway's user asks a Sentinel for the master's address")
    r = redis(sp, "gateway", rd.gw_password, "SENTINEL", "MASTERS")
    check(isinstance(r, RespError) and "NOPERM" in str(r),
          f"the gateway's user may not list a Sentinel's masters ({r})")
    r = redis(sp, "gateway", rd.gw_password, "SENTINEL", "SET", rd.name, "quorum", "1")
    check(isinstance(r, RespError) and "NOPERM" in str(r),
          "the gateway's user may not reconfigure a Sentinel")
    r = redis(sp, None, None, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", rd.name)
    check(isinstance(r, RespError) and "NOAUTH" in str(r), f"a Sentinel wants a login ({r})")
    r = redis(rd.ports[s[0]], None, None, "PING")
    check(isinstance(r, RespError) and "NOAUTH" in str(r), "the master wants a login")
    repl = read_secret(os.path.join(rd.secrets, "redis-replication-password"))
    r = redis(rd.ports[s[0]], "replication", repl, "GET", "gw:x")
    check(isinstance(r, RespError) and "NOPERM" in str(r), "the replication user reads no key")
    r = redis(rd.ports[s[0]], "gateway", rd.gw_password, "GET", "other:x")
    check(isinstance(r, RespError) and "NOPERM" in str(r), "the gateway's user stays under gw:")
    return s


def register_users(gw, n):
    users = []
    tag = uuid.uuid4().hex[:10]
    for i in range(n):
        email = f"ha-redis-{tag}-{i}@example.com"
        password = "ha-redis-" + uuid.uuid4().hex
        status, doc = gw.call_until("POST", "/auth/register",
                                    {"email": email, "password": password,
                                     "display_name": f"HA Redis {i}"})
        if not check(status in (201, 409), f"register {email}: {status}"):
            raise RuntimeError(f"register: {status} {doc}")
        users.append((email, password))
    return users


def login(gw, email, password):
    status, doc = gw.call_until("POST", "/auth/login", {"email": email, "password": password})
    if status != 200 or not doc or "access_token" not in doc:
        raise RuntimeError(f"login {email}: {status} {doc}")
    return doc["access_token"]


def all_logged_in(gw, tokens):
    """Every token still passes the session check (retrying 5xx for up to 10 s)."""
    bad = []
    for t in tokens:
        end = time.monotonic() + 10
        while True:
            status, _ = gw.call("GET", "/users/me", token=t)
            if status == 200 or status == 401 or time.monotonic() > end:
                break
            time.sleep(0.2)
        if status != 200:
            bad.append(status)
    return bad


def step_kill_master(gw, rd, tokens, users, killed):
    master, replica = rd.settled()
    say(f"3. SIGKILL of the master {master} under load")
    with Poller(gw, tokens) as poll:
        time.sleep(1.0)
        # A login answered just before the kill: its session must be on the replica.
        late = login(gw, *users[-1])
        t_kill = time.monotonic()
        killed.append(master)
        stack("kill", stack("redis-master"))
        say(f"  killed {master} {time.monotonic() - t_kill:.2f} s after the last login")
        promoted = wait_until(lambda: rd.sentinel_master_ports().count(rd.ports[replica]) >= 2 and
                              rd.role(replica) == "master", MAX_GAP)
        t_promoted = time.monotonic()
        check(promoted, f"the Sentinels promoted {replica} within {MAX_GAP:.0f} s "
                        f"({t_promoted - t_kill:.2f} s)")
        wait_until(lambda: poll.ok_since(t_promoted, 2.0), MAX_GAP)
        calls = poll.snapshot()
    gap, n_failed, statuses = gap_after(calls, t_kill)
    say(f"  calls after the kill: {sum(1 for c in calls if c[0] >= t_kill)}, failed "
        f"{n_failed} {statuses}; gap {gap:.2f} s (promotion at {t_promoted - t_kill:.2f} s)")
    check(gap <= MAX_GAP, f"the gateway answers again within {MAX_GAP:.0f} s of the kill "
                          f"({gap:.2f} s)")
    check(401 not in statuses, "no call was refused 401 (no session lost)")
    check(stack("redis-master") == replica, f"stack.sh redis-master now names {replica}")
    bad = all_logged_in(gw, tokens + [late])
    check(not bad, f"every user is still logged in, also the login just before the kill "
                   f"({bad or 'all 200'})")
    return master, replica


def step_restart_old(rd, old, new, killed):
    say(f"4. {old} started again")
    stack("start", old)
    killed.remove(old)
    ok = wait_until(lambda: rd.replica_in_sync(old, new), 30)
    check(ok, f"{old} is the replica of {new}, in sync")
    check(rd.settled() == (new, old), f"settled: master {new}, replica {old}")


def step_freeze(gw, rd, tokens, killed):
    master, replica = rd.settled()
    say(f"5. the master {master} frozen for 4 s")
    with Poller(gw, tokens) as poll:
        time.sleep(1.0)
        t0 = time.monotonic()
        killed.append(master)  # restored if the freeze left it stopped
        stack("freeze", master, "4")
        killed.remove(master)
        t_cont = time.monotonic()
        recovered = wait_until(lambda: poll.ok_since(t_cont, 2.0), MAX_GAP)
        calls = poll.snapshot()
    gap, n_failed, statuses = gap_after(calls, t0)
    say(f"  failed calls {n_failed} {statuses}; answering again {gap:.2f} s after the freeze "
        f"began (thawed at {t_cont - t0:.2f} s)")
    check(recovered, f"the gateway answers again within {MAX_GAP:.0f} s of the thaw")
    settled = wait_until(lambda: rd.settled() is not None, 30)
    s = rd.settled()
    check(settled, f"afterwards one master and its replica in sync: {s}")
    say(f"  master now {s[0] if s else '?'} (a failover {'happened' if s and s[0] != master else 'did not happen'})")
    check(401 not in statuses, "no call was refused 401 during the freeze")
    bad = all_logged_in(gw, tokens)
    check(not bad, f"every user still logged in ({bad or 'all 200'})")


def step_kill_sentinel(gw, rd, tokens, killed):
    say("6. a Sentinel killed")
    part = "sentinel/1"
    with Poller(gw, tokens) as poll:
        time.sleep(0.5)
        t0 = time.monotonic()
        killed.append(part)
        stack("kill", part)
        time.sleep(3.0)
        calls = [c for c in poll.snapshot() if c[0] >= t0]
    bad = [c[2] for c in calls if c[2] != 200]
    check(calls and not bad, f"{len(calls)} calls while {part} is down, none failed ({bad[:5]})")
    ports = rd.sentinel_master_ports()
    live = [p for p in ports if p is not None]
    m = rd.part_of(live[0]) if live else None
    check(len(live) == 2 and len(set(live)) == 1 and m is not None and rd.role(m) == "master",
          f"the other two still agree on the master ({ports})")
    stack("start", part)
    killed.remove(part)
    ok = wait_until(lambda: len(set(rd.sentinel_master_ports())) == 1 and
                    None not in rd.sentinel_master_ports(), 15)
    check(ok, f"{part} is back and agrees on the master")


def main():
    env = stack_env()
    for need in ("GATEWAY_URL", "REDIS_SENTINELS", "REDIS_ADMIN_PASSWORD_FILE"):
        if not env.get(need):
            say(f"stack.sh env names no {need}: run against an HA stack (HA=1) with its fleet")
            return 1
    gw = Gateway(env["GATEWAY_URL"])
    rd = Redis(env)
    killed = []
    try:
        if step_topology(rd) is None:
            return 1
        say("2. users logged in")
        users = register_users(gw, 5)
        tokens = [login(gw, e, p) for e, p in users[:4]]
        bad = all_logged_in(gw, tokens)
        check(not bad, f"{len(tokens)} users logged in ({bad or 'all 200'})")
        old, new = step_kill_master(gw, rd, tokens, users, killed)
        step_restart_old(rd, old, new, killed)
        step_freeze(gw, rd, tokens, killed)
        step_kill_sentinel(gw, rd, tokens, killed)
    except Exception as e:  # noqa: BLE001 - any error is a failed check
        check(False, f"{type(e).__name__}: {e}")
    finally:
        restart_missing(rd, killed)
    if failures:
        say(f"FAILED: {len(failures)} check(s): " + "; ".join(failures))
        return 1
    say("all Redis HA checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
