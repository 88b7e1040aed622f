"""The chaos stack as the harness sees it: deploy/local/stack.sh (kill, start, env,
parts, create-admin), the services' PostgreSQL databases through psql, and the Kafka
topics through kcat and the broker's own consumer-group tool.

Everything is read from `stack.sh env` (never a hard-coded port), and the fleet's
services and topics from deploy/fleet.conf (deploy/fleet.py). Every external
command has a timeout, so a hung tool fails the run instead of hanging it.
"""

import csv
import io
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import fleet  # noqa: E402

STACK_SH = os.path.join(ROOT, "deploy", "local", "stack.sh")
SERVICES = fleet.services()
SAGA_TOPICS = tuple(fleet.event_topics())
DLQ_TOPICS = tuple(t + ".dlq" for t in SAGA_TOPICS)
# The consumer groups: a consuming service's group is its program's name.
CONSUMER_GROUPS = tuple(r.program for r in SERVICES if r.consumes)


class StackError(RuntimeError):
    """A stack command or a database/topic query failed."""


def _run(argv, timeout, stdin=None, env=None):
    """Runs argv; returns stdout. Raises StackError on a non-zero exit or a timeout."""
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired as e:
        raise StackError(f"{' '.join(argv[:3])}: no answer within {timeout}s") from e
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        raise StackError(f"{' '.join(argv[:3])}: exit {p.returncode}: {' | '.join(tail)}")
    return p.stdout


class Stack:
    """The chaos profile's stack. The profile, SCALE and BIN_DIR come from the caller's
    environment (tests/chaos/run.sh sets them)."""

    def __init__(self):
        self.env = {}
        for line in _run([STACK_SH, "env"], 60).splitlines():
            name, sep, value = line.partition("=")
            if sep:  # shell syntax: a value may be quoted (stack.sh env)
                self.env[name] = shlex.split(value)[0] if value else value
        for need in ("STACK_DATA", "GATEWAY_URL", "KAFKA_BROKERS",
                     *(f"{r.name.upper()}_DATABASE_URL" for r in SERVICES)):
            if not self.env.get(need):
                raise StackError(f"stack.sh env does not name {need}")
        self.data = self.env["STACK_DATA"]
        self.log_dir = os.path.join(self.data, "log")
        self.brokers = self.env["KAFKA_BROKERS"]
        # The stack's admin (a super user): kcat's -F file, the Java tools' properties.
        conf = self.env.get("KAFKA_ADMIN_KCAT_CONFIG")
        self.kcat = ["kcat"] + (["-F", conf] if conf else []) + ["-b", self.brokers]
        props = self.env.get("KAFKA_ADMIN_CLIENT_PROPERTIES")
        self.kafka_tool_auth = ["--command-config", props] if props else []
        self.db_urls = {r.name: self.env[f"{r.name.upper()}_DATABASE_URL"] for r in SERVICES}
        self._kafka_libs = None

    # ---- parts ----

    def parts(self):
        return _run([STACK_SH, "parts"], 60).split()

    def kill(self, part):
        _run([STACK_SH, "kill", part], 60)

    def start(self, part, timeout=240):
        _run([STACK_SH, "start", part], timeout)

    def freeze(self, part, seconds):
        """SIGSTOP of the part's processes, SIGCONT `seconds` later; returns after it."""
        _run([STACK_SH, "freeze", part, f"{seconds:.1f}"], seconds + 60)

    def primary(self, svc):
        """The part that is the primary of a service's database now (HA topology)."""
        return _run([STACK_SH, "primary", svc], 60).strip()

    def settled(self):
        """True when the stack could lose any one part again (`stack.sh settled`)."""
        try:
            _run([STACK_SH, "settled"], 60)
        except StackError:
            return False
        return True

    def redis_master(self):
        """The Redis server that is the master now (HA topology)."""
        return _run([STACK_SH, "redis-master"], 60).strip()

    def serving(self, part):
        """True if the part answers now: `stack.sh answers` for the infrastructure
        (a PostgreSQL node, Redis, a Sentinel, a Kafka node, the failover monitor),
        /readyz of a service instance, /healthz of the gateway. `stack.sh start` waits
        for the same, but the harness checks for itself: a start that returns with
        nothing listening must fail the run, not hang it."""
        try:
            if part == "gateway":
                _run(["curl", "-sf", "-m", "5", self.env["GATEWAY_URL"] + "/healthz"], 15)
            elif part.rpartition("-")[0] in (r.program for r in SERVICES):
                program, _, k = part.rpartition("-")
                svc = next(r.name for r in SERVICES if r.program == program)
                addrs = self.env[f"{svc.upper()}_ADMIN_ADDRS"].split(",")
                _run(["curl", "-sf", "-m", "5", f"http://{addrs[int(k) - 1]}/readyz"], 15)
            else:
                _run([STACK_SH, "answers", part], 30)
        except StackError:
            return False
        return True

    def create_admin(self, email, password):
        _run([STACK_SH, "create-admin", email], 120, stdin=password + "\n")

    # ---- PostgreSQL ----

    def query(self, svc, sql, timeout=120):
        """Rows of one SQL statement on the service's database, as lists of strings
        (NULL is '')."""
        env = dict(os.environ, PGCONNECT_TIMEOUT="10")
        out = _run(["psql", self.db_urls[svc], "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], timeout, env=env)
        return list(csv.reader(io.StringIO(out)))

    def scalar(self, svc, sql):
        rows = self.query(svc, sql)
        return int(rows[0][0]) if rows and rows[0] and rows[0][0] != "" else 0

    # ---- Kafka ----

    def topic_messages(self, topic, timeout=120):
        """Every message of a topic from the beginning: (key, partition, offset,
        headers dict). kcat without a group: nothing is committed anywhere."""
        fmt = "%k\t%p\t%o\t%h\n"
        out = _run(self.kcat + ["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt],
                   timeout)
        msgs = []
        for line in out.splitlines():
            fields = line.split("\t")
            if len(fields) != 4:
                continue
            headers = {}
            for h in fields[3].split(","):
                name, sep, value = h.partition("=")
                if sep:
                    headers[name] = value
            msgs.append((fields[0], int(fields[1]), int(fields[2]), headers))
        return msgs

    def topic_count(self, topic):
        return len(self.topic_messages(topic))

    def kafka_libs(self):
        """The broker's classpath directory, as deploy/local/lib.sh computes it."""
        if self._kafka_libs is None:
            self._kafka_libs = _run(["bash", "-c", f". '{ROOT}/deploy/local/lib.sh' && "
                                     "printf %s \"$KAFKA_LIBS\""], 30).strip()
        return self._kafka_libs

    def consumer_lag(self, timeout=120):
        """{group: total lag} over every consumer group and partition, from the
        broker's ConsumerGroupCommand. A partition with messages and no committed
        offset counts its whole log as lag."""
        libs = self.kafka_libs()
        out = _run(["java", "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    f"-Dlog4j2.configurationFile={ROOT}/deploy/local/kafka/log4j2.properties",
                    "-cp", f"{libs}/*", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                    "--bootstrap-server", self.brokers, *self.kafka_tool_auth, "--describe",
                    "--all-groups"], timeout)
        lag = {}
        for line in out.splitlines():
            f = line.split()
            # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
            if len(f) < 6 or f[0] == "GROUP" or not re.fullmatch(r"\d+", f[2]):
                continue
            current, end = f[3], f[4]
            if not re.fullmatch(r"\d+", end):
                continue
            behind = int(end) - int(current) if re.fullmatch(r"\d+", current) else int(end)
            lag[f[0]] = lag.get(f[0], 0) + max(behind, 0)
        return lag

