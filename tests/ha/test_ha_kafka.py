#!/usr/bin/python3
"""HA=1, Kafka (docs/ha-kafka.md): the three-node KRaft cluster keeps every acknowledged
write and keeps taking writes when one node is lost, and refuses them rather than risk
them when two are.

Runs against an already running HA stack (STACK_PROFILE, STACK_PORT_BASE, HA from the
environment; deploy/local/stack.sh env gives the rest) and checks, printing each step:
  1. the broker settings (default replication factor 3, min.insync.replicas 2, the
     internal topics' RF 3 / min ISR 2, no unclean leader election) and every fleet
     topic (TOPICS and their .dlq, and __consumer_offsets): RF 3, min ISR 2, ISR
     complete;
  2. with a producer writing numbered messages every 10 ms, acks=all and idempotent,
     as the programs' (librdkafka, with common/src/kfk_producer.c's settings), to a
     topic of this test made with the brokers' defaults (so it is what a fleet topic
     is, without putting foreign records in front of the fleet's consumers): SIGKILL
     of its partition's leader (stack.sh kill kafka/K); the gap, from the SIGKILL to
     the first acknowledgement of a message produced after it, stays under
     KILL_GAP_MAX_S; the node, started again, is back in every ISR within
     REJOIN_MAX_S;
  3. a freeze of the leader (stack.sh freeze kafka/K 5): producing resumes, within
     FREEZE_GAP_MAX_S;
  4. with two nodes down, an acks=all write is refused (no acknowledgement: durability
     over availability), and once one node is back it is taken again;
  5. every message acknowledged in 2-4 is in the topic (once or more), none missing.
Whatever it killed it starts again before it exits, and it deletes its topic, so the
next test finds a whole stack. Exit status: 0 when every check held, 1 otherwise.
Standard library only (librdkafka through ctypes, kcat, the broker's Java tools).
"""

import ctypes
import json
import os
import shlex
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import fleet  # noqa: E402

STACK_SH = os.path.join(ROOT, "deploy", "local", "stack.sh")
TOPIC = "ha-test.kafka"
# Bounds of the checks (docs/ha-kafka.md has what was measured): a node's loss costs
# its fencing (broker.session.timeout.ms 3 s) plus the client's metadata refresh; a
# node started again catches up and rejoins the ISR in seconds.
KILL_GAP_MAX_S = 10.0
FREEZE_S = 5
FREEZE_GAP_MAX_S = FREEZE_S + 7.0
REJOIN_MAX_S = 60.0
PRODUCE_EVERY_S = 0.01
# What an acks=all write with two nodes of three down may be answered.
REFUSALS = ("NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "REQUEST_TIMED_OUT",
            "_MSG_TIMED_OUT", "_TIMED_OUT", "NOT_LEADER_OR_FOLLOWER", "LEADER_NOT_AVAILABLE")

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def say(what):
    print("..    " + what, flush=True)


def run(argv, timeout=120, check_rc=True):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv[:4]), p.returncode,
                                               (p.stderr or p.stdout).strip()[-600:]))
    return p.stdout


def stack_env():
    env = {}
    for line in run([STACK_SH, "env"], 60).splitlines():
        name, sep, value = line.partition("=")
        if sep:
            env[name] = shlex.split(value)[0] if value else value
    return env


ENV = stack_env()
DATA = ENV["STACK_DATA"]
BROKERS = ENV["KAFKA_BROKERS"]
KCAT = ["kcat", "-F", ENV["KAFKA_ADMIN_KCAT_CONFIG"], "-b", BROKERS]
KAFKA_LIBS = run(["bash", "-c", ". '%s/deploy/local/lib.sh' && printf %%s \"$KAFKA_LIBS\"" % ROOT],
                 30).strip()


def kafka_tool(cls, *args, timeout=120):
    """One of the broker's Java tools as the stack's admin, on every node."""
    return run(["java", "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dlog4j2.configurationFile=%s/deploy/local/kafka/log4j2.properties" % ROOT,
                "-cp", KAFKA_LIBS + "/*", cls, "--bootstrap-server", BROKERS,
                "--command-config", ENV["KAFKA_ADMIN_CLIENT_PROPERTIES"], *args], timeout)


def metadata(topic=None):
    """kcat's metadata (JSON) from any live node."""
    args = KCAT + ["-L", "-J", "-m", "5"] + (["-t", topic] if topic else [])
    return json.loads(run(args, 30))


def partitions(meta, topic):
    """The topic's partitions, replicas and isrs as lists of node ids; None when the
    metadata does not have it."""
    for t in meta.get("topics", []):
        if t["topic"] == topic and not t.get("error"):
            return [dict(p, replicas=[r["id"] for r in p.get("replicas", [])],
                         isrs=[r["id"] for r in p.get("isrs", [])]) for p in t["partitions"]]
    return None


def isr_complete(topics, nodes=3):
    """True when every partition of every topic has `nodes` replicas, all in the ISR."""
    meta = metadata()
    for t in topics:
        ps = partitions(meta, t)
        if not ps:
            return False
        for p in ps:
            if len(p["replicas"]) != nodes or len(p["isrs"]) != nodes:
                return False
    return True


def active_controller():
    """The quorum's leader (the metadata's controllerid is any broker under KRaft)."""
    out = kafka_tool("org.apache.kafka.tools.MetadataQuorumCommand", "describe", "--status")
    for line in out.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "LeaderId":
            return int(value)
    return None


def leader_of(topic, partition=0):
    for p in partitions(metadata(topic), topic) or []:
        if p["partition"] == partition and p["leader"] > 0:
            return p["leader"]
    return None


def node_pid(k):
    try:
        with open(os.path.join(DATA, "run", "kafka-%d.pid" % k)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def node_stopped(pid):
    """True once the process is stopped (SIGSTOP: stack.sh stops a part's processes
    before it kills them), a zombie, or gone: from then on it answers nobody."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("T", "t", "Z", "X")


def parts_down():
    return [k for k in (1, 2, 3) if not node_pid(k) or node_stopped(node_pid(k))
            or not os.path.exists("/proc/%d" % node_pid(k))]


# ---- librdkafka, as the programs use it ----

class RdKafkaMessage(ctypes.Structure):
    _fields_ = [("err", ctypes.c_int), ("rkt", ctypes.c_void_p), ("partition", ctypes.c_int32),
                ("payload", ctypes.c_void_p), ("len", ctypes.c_size_t),
                ("key", ctypes.c_void_p), ("key_len", ctypes.c_size_t),
                ("offset", ctypes.c_int64), ("_private", ctypes.c_void_p)]


RK = ctypes.CDLL("librdkafka.so.1")
RK.rd_kafka_conf_new.restype = ctypes.c_void_p
RK.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                 ctypes.c_char_p, ctypes.c_size_t]
DR_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(RdKafkaMessage), ctypes.c_void_p)
RK.rd_kafka_conf_set_dr_msg_cb.argtypes = [ctypes.c_void_p, DR_CB]
RK.rd_kafka_new.restype = ctypes.c_void_p
RK.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
RK.rd_kafka_topic_new.restype = ctypes.c_void_p
RK.rd_kafka_topic_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
RK.rd_kafka_produce.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int, ctypes.c_void_p,
                                ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                ctypes.c_void_p]
RK.rd_kafka_poll.argtypes = [ctypes.c_void_p, ctypes.c_int]
RK.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
RK.rd_kafka_topic_destroy.argtypes = [ctypes.c_void_p]
RK.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
RK.rd_kafka_err2name.restype = ctypes.c_char_p
RK.rd_kafka_last_error.restype = ctypes.c_int
RD_KAFKA_MSG_F_COPY = 2


class Producer:
    """A librdkafka producer as the admin, to partition 0 of TOPIC. idempotent: the
    programs' settings (kfk_producer.c: idempotence, so acks=all, no local timeout);
    else acks=all without retries and with a timeout, so that a refusal is reported
    rather than retried for ever. Delivery reports: acked {seq: time}, errors
    {seq: error name}; sent {seq: time}."""

    def __init__(self, idempotent=True, extra=None):
        conf = RK.rd_kafka_conf_new()
        with open(ENV["KAFKA_ADMIN_PASSWORD_FILE"]) as f:
            password = f.read().strip()
        settings = {"bootstrap.servers": BROKERS, "client.id": "test-ha-kafka",
                    "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                    "sasl.username": ENV["KAFKA_ADMIN_USERNAME"], "sasl.password": password,
                    "ssl.ca.location": ENV["TLS_CA_FILE"], "linger.ms": "0",
                    "acks": "all", "log.connection.close": "false", "log_level": "0",
                    # kfk_conf.c and kfk_producer.c: a frozen broker's requests are
                    # given up after 6 s, the broker waits 5 s for the ISR.
                    "socket.timeout.ms": "6000", "request.timeout.ms": "5000"}
        if idempotent:
            settings.update({"enable.idempotence": "true", "message.timeout.ms": "0",
                             "enable.gapless.guarantee": "true"})
        else:
            settings.update({"enable.idempotence": "false", "retries": "0",
                             "message.timeout.ms": "10000"})
        settings.update(extra or {})
        err = ctypes.create_string_buffer(512)
        for k, v in settings.items():
            if RK.rd_kafka_conf_set(conf, k.encode(), v.encode(), err, 512) != 0:
                raise RuntimeError("librdkafka %s: %s" % (k, err.value.decode()))
        self.acked, self.errors, self.sent = {}, {}, {}
        self._cb = DR_CB(self._on_delivery)  # kept: librdkafka calls it
        RK.rd_kafka_conf_set_dr_msg_cb(conf, self._cb)
        self.rk = RK.rd_kafka_new(0, conf, err, 512)
        if not self.rk:
            raise RuntimeError("librdkafka: " + err.value.decode())
        self.rkt = RK.rd_kafka_topic_new(self.rk, TOPIC.encode(), None)
        self.next = 1

    def _on_delivery(self, rk, msg, opaque):
        m = msg.contents
        seq = int(ctypes.string_at(m.payload, m.len).decode())
        if m.err == 0:
            self.acked.setdefault(seq, time.monotonic())
        else:
            self.errors[seq] = RK.rd_kafka_err2name(m.err).decode()

    def produce(self):
        seq = self.next
        payload = str(seq).encode()
        if RK.rd_kafka_produce(self.rkt, 0, RD_KAFKA_MSG_F_COPY, payload, len(payload), None, 0,
                               None) != 0:
            raise RuntimeError("produce: %s" % RK.rd_kafka_err2name(RK.rd_kafka_last_error()))
        self.sent[seq] = time.monotonic()
        self.next += 1
        return seq

    def poll(self, ms=0):
        RK.rd_kafka_poll(self.rk, ms)

    def run_for(self, seconds, until=None):
        """Produces a message every PRODUCE_EVERY_S for `seconds`, or until until()."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            self.produce()
            self.poll(0)
            time.sleep(PRODUCE_EVERY_S)

    def first_ack_after(self, t):
        """(seconds from t to the first acknowledgement of a message produced after t,
        or None)."""
        acks = [a for s, a in self.acked.items() if self.sent[s] >= t]
        return min(acks) - t if acks else None

    def close(self, ms=30000):
        left = RK.rd_kafka_flush(self.rk, ms)
        RK.rd_kafka_topic_destroy(self.rkt)
        RK.rd_kafka_destroy(self.rk)
        return left


# ---- the stack's parts ----

class Parts:
    """stack.sh kill / start / freeze of the Kafka nodes; remembers what it killed."""

    def __init__(self):
        self.killed = set()

    def kill(self, k):
        say("stack.sh kill kafka/%d" % k)
        self.killed.add(k)
        run([STACK_SH, "kill", "kafka/%d" % k], 60)

    def start(self, k):
        t = time.monotonic()
        run([STACK_SH, "start", "kafka/%d" % k], 180)
        self.killed.discard(k)
        say("stack.sh start kafka/%d: answered after %.1f s" % (k, time.monotonic() - t))

    def restore(self):
        for k in sorted(self.killed | set(parts_down())):
            try:
                self.start(k)
            except Exception as e:  # noqa: BLE001 - reported, the others still started
                check(False, "kafka/%d starts again (%s)" % (k, e))


def wait_until(cond, seconds, step=0.5):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except (RuntimeError, subprocess.TimeoutExpired, ValueError):
            pass
        time.sleep(step)
    return False


def fleet_topics():
    """TOPICS of deploy/fleet.conf: the saga topics and their .dlq."""
    return list(fleet.topics())


# ---- the checks ----

def check_settings():
    out = kafka_tool("kafka.admin.ConfigCommand", "--entity-type", "brokers",
                     "--entity-name", "1", "--describe", "--all")
    want = {"default.replication.factor": "3", "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": "3",
            "share.coordinator.state.topic.min.isr": "2",
            "unclean.leader.election.enable": "false"}
    have = {}
    for line in out.splitlines():
        name, sep, rest = line.strip().partition("=")
        if sep and name in want:
            have[name] = rest.split(" ", 1)[0]
    for name, value in want.items():
        check(have.get(name) == value, "broker %s=%s (is %s)" % (name, value, have.get(name)))


def check_topics(topics):
    meta = metadata()
    for t in topics:
        ps = partitions(meta, t)
        if not check(bool(ps), "topic %s exists" % t):
            continue
        bad = [p["partition"] for p in ps if len(p["replicas"]) != 3]
        check(not bad, "%s: replication factor 3 on all %d partitions%s"
              % (t, len(ps), " (not on %s)" % bad if bad else ""))
        bad = [p["partition"] for p in ps if sorted(p["isrs"]) != sorted(p["replicas"])]
        check(not bad, "%s: ISR complete%s" % (t, " (not on %s)" % bad if bad else ""))
    out = kafka_tool("kafka.admin.ConfigCommand", "--entity-type", "topics",
                     "--describe", "--all")
    isr, current = {}, None
    for line in out.splitlines():
        if line.startswith("All configs for topic "):
            current = line.split()[4]
        elif current and line.strip().startswith("min.insync.replicas="):
            isr[current] = line.strip().split("=", 1)[1].split(" ", 1)[0]
    for t in topics:
        check(isr.get(t) == "2", "%s: min.insync.replicas=2 (is %s)" % (t, isr.get(t)))


def ensure_offsets_topic():
    """__consumer_offsets exists once a group has asked for its coordinator: a kcat
    consumer in a group of its own, for a moment."""
    if partitions(metadata(), "__consumer_offsets"):
        return
    say("no __consumer_offsets yet: a kcat group consumer makes it")
    subprocess.run(KCAT + ["-G", "test-ha-kafka", TOPIC, "-q", "-e"], capture_output=True,
                   timeout=60)
    wait_until(lambda: partitions(metadata(), "__consumer_offsets"), 30)


class LeaderWatch:
    """Asks the metadata for TOPIC's leader every 0.1 s (a kcat each) in a thread:
    moved is the time it first named another node than `old` (the broker's side of
    the failover; the rest of the gap is the client's)."""

    def __init__(self, old):
        self.old, self.moved, self._stop = old, None, False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop and self.moved is None:
            try:
                new = leader_of(TOPIC)
                if new is not None and new != self.old:
                    self.moved = time.monotonic()
            except (RuntimeError, subprocess.TimeoutExpired, ValueError):
                pass
            time.sleep(0.1)

    def stop(self):
        self._stop = True
        self._t.join(30)


def kill_leader(prod, parts, figures):
    leader = leader_of(TOPIC)
    if not check(leader is not None, "%s has a leader before the kill" % TOPIC):
        return
    controller = active_controller()
    pid = node_pid(leader)
    killer = subprocess.Popen([STACK_SH, "kill", "kafka/%d" % leader], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    parts.killed.add(leader)
    say("stack.sh kill kafka/%d (the leader of %s/0%s)" % (
        leader, TOPIC, ", and the active controller" if controller == leader else ""))
    # The outage begins when the node stops answering: stack.sh stops its processes
    # (SIGSTOP) and then kills them; polled between messages.
    t0 = None
    while t0 is None:
        if node_stopped(pid):
            t0 = time.monotonic()
        prod.produce()
        prod.poll(0)
        time.sleep(0.002)
    watch = LeaderWatch(leader)
    prod.run_for(KILL_GAP_MAX_S + 20, until=lambda: prod.first_ack_after(t0) is not None)
    prod.run_for(1)
    killer.wait(30)
    watch.stop()
    gap = prod.first_ack_after(t0)
    if watch.moved is not None:
        say("the metadata named a new leader %.2f s after the SIGKILL" % (watch.moved - t0))
        figures.setdefault("kill_leader_moved_s", []).append(round(watch.moved - t0, 2))
    figures["kill_gap_s%s" % ("_controller" if controller == leader else "")] = gap
    check(gap is not None and gap <= KILL_GAP_MAX_S,
          "SIGKILL of the leader kafka/%d: first acks=all write acknowledged %s after it "
          "(bound %.0f s)" % (leader, "%.2f s" % gap if gap is not None else "never",
                              KILL_GAP_MAX_S))
    new = leader_of(TOPIC)
    check(new not in (None, leader), "%s/0 has a new leader (kafka/%s)" % (TOPIC, new))
    # It comes back, catches up and is in every ISR again.
    parts.start(leader)
    t1 = time.monotonic()
    ok = wait_until(lambda: isr_complete([TOPIC] + fleet_topics()), REJOIN_MAX_S)
    figures.setdefault("rejoin_s", []).append(round(time.monotonic() - t1, 1))
    check(ok, "kafka/%d back in every ISR %.1f s after it answered (bound %.0f s)"
          % (leader, time.monotonic() - t1, REJOIN_MAX_S))
    prod.run_for(1)


def freeze_leader(prod, figures):
    leader = leader_of(TOPIC)
    if not check(leader is not None, "%s has a leader before the freeze" % TOPIC):
        return
    pid = node_pid(leader)
    say("stack.sh freeze kafka/%d %d (the leader of %s/0)" % (leader, FREEZE_S, TOPIC))
    freezer = subprocess.Popen([STACK_SH, "freeze", "kafka/%d" % leader, str(FREEZE_S)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = None
    while t0 is None and freezer.poll() is None:
        if node_stopped(pid):
            t0 = time.monotonic()
        prod.produce()
        prod.poll(0)
        time.sleep(0.002)
    if not check(t0 is not None, "kafka/%d was frozen" % leader):
        return
    prod.run_for(FREEZE_GAP_MAX_S + 20, until=lambda: prod.first_ack_after(t0) is not None)
    freezer.wait(60)
    gap = prod.first_ack_after(t0)
    figures["freeze_gap_s"] = gap
    check(gap is not None and gap <= FREEZE_GAP_MAX_S,
          "freeze of the leader kafka/%d for %d s: writes acknowledged again %s after it "
          "stopped (bound %.0f s)" % (leader, FREEZE_S, "%.2f s" % gap if gap is not None
                                      else "never", FREEZE_GAP_MAX_S))
    t1 = time.monotonic()
    ok = wait_until(lambda: isr_complete([TOPIC] + fleet_topics()), REJOIN_MAX_S)
    check(ok, "kafka/%d back in every ISR %.1f s after its SIGCONT" % (leader,
                                                                       time.monotonic() - t1))
    prod.run_for(1)


def one_write():
    """One acks=all write without retries: (acknowledged, error name)."""
    p = Producer(idempotent=False)
    p.next = one_write.next  # numbers of their own, above the main producer's
    one_write.next += 1
    seq = p.produce()
    end = time.monotonic() + 20
    while seq not in p.acked and seq not in p.errors and time.monotonic() < end:
        p.poll(100)
    p.close(1000)
    return seq in p.acked, p.errors.get(seq, "no report"), seq


one_write.next = 10 ** 9


def two_down(parts, figures):
    leader = leader_of(TOPIC)
    others = [k for k in (1, 2, 3) if k != leader]
    # The first one: its fencing takes it out of the ISR (the quorum still has two
    # voters); the second one takes the quorum with it, so nothing changes any more.
    parts.kill(others[0])
    wait_until(lambda: all(len(p["isrs"]) == 2 for p in partitions(metadata(TOPIC), TOPIC)), 30)
    parts.kill(others[1])
    # With one node of three the quorum is gone: the ISR cannot shrink to the one
    # survivor, so the broker answers REQUEST_TIMED_OUT rather than NOT_ENOUGH_REPLICAS
    # (or the partition has no leader). Either way the write is not acknowledged.
    ok, err, seq = one_write()
    figures["two_down_error"] = err
    check(not ok and err in REFUSALS,
          "with kafka/%d and kafka/%d down an acks=all write is refused (%s)"
          % (others[0], others[1], err))
    parts.start(others[1])
    ok = False
    for _ in range(10):
        ok, err, seq2 = one_write()
        if ok:
            break
        time.sleep(1)
    check(ok, "with kafka/%d back, an acks=all write is taken (%s)" % (others[1],
                                                                     "ok" if ok else err))
    parts.start(others[0])
    check(wait_until(lambda: isr_complete([TOPIC] + fleet_topics()), REJOIN_MAX_S),
          "every node back in every ISR")
    return [seq2] if ok else []


def read_back(prod, extra):
    """Every acknowledged number is in the topic."""
    out = run(KCAT + ["-C", "-t", TOPIC, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%s\n"],
              120)
    seen = {}
    for line in out.split():
        if line.isdigit():
            seen[int(line)] = seen.get(int(line), 0) + 1
    acked = set(prod.acked)
    missing = sorted(acked - set(seen))
    dups = sum(1 for s in acked if seen.get(s, 0) > 1)
    check(not missing, "all %d acknowledged messages are in %s (missing: %s; duplicated: %d)"
          % (len(acked), TOPIC, missing[:20] if missing else "none", dups))
    check(not prod.errors, "the idempotent producer had no failed delivery (%s)"
          % (dict(list(prod.errors.items())[:5]) or "none"))
    for s in extra:
        check(s in seen, "the write taken after the two-node outage is in %s" % TOPIC)


def main():
    if ENV.get("HA") != "1":
        print("test_ha_kafka: the stack is not HA=1 (stack.sh env says HA=%s)" % ENV.get("HA"))
        return 1
    parts = Parts()
    figures = {}
    prod = None
    try:
        say("brokers %s" % BROKERS)
        check(len(metadata()["brokers"]) == 3, "three nodes answer")
        check_settings()
        kafka_tool("org.apache.kafka.tools.TopicCommand", "--delete", "--if-exists",
                   "--topic", TOPIC)
        wait_until(lambda: not partitions(metadata(), TOPIC), 30)
        # The brokers' defaults: RF 3, min ISR 2 (what check_topics sees for it too).
        kafka_tool("org.apache.kafka.tools.TopicCommand", "--create", "--topic", TOPIC,
                   "--partitions", "1")
        check(wait_until(lambda: isr_complete([TOPIC]), 30), "%s made, ISR complete" % TOPIC)
        ensure_offsets_topic()
        check_topics(fleet_topics() + ["__consumer_offsets", TOPIC])

        prod = Producer()
        prod.run_for(3)
        check(len(prod.acked) > 0, "the producer's writes are acknowledged (%d)" % len(prod.acked))
        kill_leader(prod, parts, figures)
        freeze_leader(prod, figures)
        left = prod.close()
        prod_done = prod
        prod = None
        check(left == 0, "the producer flushed every message (%d left)" % left)
        extra = two_down(parts, figures)
        read_back(prod_done, extra)
    except Exception as e:  # noqa: BLE001 - a failure of the test itself is a failure
        check(False, "test ran to its end (%s: %s)" % (type(e).__name__, e))
    finally:
        if prod is not None:
            prod.close(5000)
        parts.restore()
        try:
            kafka_tool("org.apache.kafka.tools.TopicCommand", "--delete", "--if-exists",
                       "--topic", TOPIC)
        except Exception as e:  # noqa: BLE001
            say("could not delete %s: %s" % (TOPIC, e))
    say("figures: %s" % json.dumps(figures))
    if failures:
        print("test_ha_kafka: %d check(s) failed" % len(failures))
        return 1
    print("test_ha_kafka: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
