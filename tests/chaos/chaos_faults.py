"""Faults at random moments of the load, and the gate that keeps them inside it.

A fault is SIGKILL of one part (`stack.sh kill`), a random 1-5 s of death, then
`stack.sh start` (which returns once the part answers); or, of kind `freeze`, SIGSTOP
of one part for a random 2-6 s, then SIGCONT (`stack.sh freeze`). Faults run one at a
time.
Fault k of F fires when the load has claimed a random point of its k-th slice of
orders, k/(F+1) .. (k+1)/(F+1); the load may not claim orders beyond that slice until
fault k is over, so every fault happens while orders are flowing, whatever the
relative speed of the load and of the restarts, and the last slice runs fault-free.
"""

import threading
import time

from chaos_stack import fleet

# Fault kinds: the part(s) each one picks from: every program of deploy/fleet.conf,
# Kafka, PostgreSQL and Redis. Services rotate over their instances and PostgreSQL over
# the databases, so repeated kinds hit different parts. On the HA topology (HA=1,
# docs/ha.md) `kafka` rotates over the three nodes, `postgres` kills the primary of a
# database (found when the fault fires: `stack.sh primary SVC`), `redis` the master
# (`stack.sh redis-master`), and `freeze` stops any part for a while.
KINDS = (*(r.program for r in fleet.programs()), "kafka", "postgres", "redis", "freeze")
SERVICE_KINDS = tuple(r.program for r in fleet.services())
# The kinds a run injects unless CHAOS_FAULT_KINDS says otherwise.
DEFAULT_KINDS = {False: tuple(k for k in KINDS if k != "freeze"), True: KINDS}
# A part named here is resolved when its fault fires: the role moves with failovers.
PRIMARY_OF = "postgres-primary:"  # + a service with a database
REDIS_MASTER = "redis-master"


class Progress:
    """Orders claimed by the load, faults finished, and the gate between them."""

    def __init__(self, n_orders, n_faults):
        self.n_orders, self.n_faults = n_orders, n_faults
        self.claimed = 0
        self.faults_done = 0
        self.aborted = None  # why the load stopped early, if it did
        self._cv = threading.Condition()

    def _limit(self):
        if self.faults_done >= self.n_faults:
            return self.n_orders
        return self.n_orders * (self.faults_done + 1) // (self.n_faults + 1)

    def claim(self):
        """The next order index to place, waiting at the gate; None when all are."""
        with self._cv:
            while (self.claimed < self.n_orders and self.claimed >= self._limit()
                   and not self.aborted):
                self._cv.wait(0.5)
            if self.claimed >= self.n_orders or self.aborted:
                return None
            i = self.claimed
            self.claimed += 1
            self._cv.notify_all()
            return i

    def wait_claimed(self, n):
        """Waits until n orders are claimed; False if the load was aborted."""
        with self._cv:
            while self.claimed < n and not self.aborted:
                self._cv.wait(0.5)
            return not self.aborted

    def abort(self, why):
        """Stops the load and the faults: nothing more is claimed or injected."""
        with self._cv:
            if not self.aborted:
                self.aborted = why
            self._cv.notify_all()

    def fault_done(self):
        with self._cv:
            self.faults_done += 1
            self._cv.notify_all()


def plan_faults(rng, n_faults, kinds, parts, ha=False):
    """F faults spread evenly over the kinds (each at least once), in random order,
    with the part each one hits: [(kind, part)]. parts is `stack.sh parts`; on the HA
    topology a database's primary and the Redis master are named by role
    (PRIMARY_OF + service, REDIS_MASTER) and resolved when the fault fires."""
    picks = []
    while len(picks) < n_faults:
        round_ = list(kinds)
        rng.shuffle(round_)
        picks += round_
    picks = picks[:max(n_faults, len(kinds))]
    rng.shuffle(picks)
    candidates = {}
    for kind in kinds:
        if kind == "postgres" and ha:
            c = [PRIMARY_OF + r.name for r in fleet.services() if r.database]
        elif kind == "postgres":
            c = [p for p in parts if p.startswith("postgres/")]
        elif kind == "redis" and ha:
            c = [REDIS_MASTER]
        elif kind == "kafka":
            c = [p for p in parts if p == "kafka" or p.startswith("kafka/")]
        elif kind == "freeze":
            c = list(parts)
        elif kind in SERVICE_KINDS:
            c = [p for p in parts if p.rpartition("-")[0] == kind]
        else:
            c = [p for p in parts if p == kind]
        if not c:
            raise RuntimeError(f"stack.sh parts has nothing for fault kind {kind}: {parts}")
        rng.shuffle(c)
        candidates[kind] = c
    used = {k: 0 for k in kinds}
    plan = []
    for kind in picks:
        c = candidates[kind]
        plan.append((kind, c[used[kind] % len(c)]))
        used[kind] += 1
    return plan


class FaultInjector(threading.Thread):
    """Runs the fault plan against the stack while the load runs."""

    def __init__(self, stack, progress, plan, rng, log, ha=False):
        super().__init__(name="faults", daemon=True)
        self.stack, self.progress, self.plan, self.log = stack, progress, plan, log
        self.ha = ha
        # Drawn up front from the seeded RNG, so a seed replays the same schedule.
        f = len(plan)
        self.points = [int(progress.n_orders * (k + rng.uniform(0.15, 0.85)) / (f + 1))
                       for k in range(f)]
        self.downtimes = [rng.uniform(2.0, 6.0) if kind == "freeze" else rng.uniform(1.0, 5.0)
                          for kind, _ in plan]
        # dicts: kind, part, at_order, down_s, restart_s, error, and the fault's window
        # in wall-clock seconds (t_start: the kill or stop, t_end: the part answers again)
        self.injected = []
        self.t0 = time.monotonic()

    def run(self):
        for k, (kind, part) in enumerate(self.plan):
            if not self.progress.wait_claimed(self.points[k]):
                return
            self.injected.append(self._one(kind, part, self.points[k], self.downtimes[k]))
            self.progress.fault_done()

    def _one(self, kind, part, at_order, down_s):
        rec = {"kind": kind, "part": part, "at_order": at_order, "down_s": round(down_s, 2),
               "at_s": round(time.monotonic() - self.t0, 1), "restart_s": None, "error": None,
               "t_start": time.time(), "t_end": None}
        try:
            part = rec["part"] = self._resolve(part)
            if kind == "freeze":
                self._freeze(rec, part, down_s)
            else:
                self._kill(rec, part, down_s)
        except Exception as e:  # a fault that could not be injected fails the run
            rec["error"] = str(e)
        if rec["error"]:
            self.log(f"fault: {part}: {rec['error']}")
            rec["recovered_after_s"] = self._recover(part)
        rec["t_end"] = time.time()
        if self.ha:
            self._settle(rec)
        return rec

    def _settle(self, rec, timeout=240):
        """HA survives one failure at a time: the next fault waits until the stack
        could lose a part again (`stack.sh settled`: every Kafka node in every ISR,
        every database with its synchronous standby, Redis with its replica), as an
        operator waits before the next maintenance. Not settling in time fails the
        run; the seconds it took are in the fault's record."""
        t = time.monotonic()
        while not self.stack.settled():
            if time.monotonic() - t > timeout:
                rec["error"] = rec["error"] or f"redundancy not restored {timeout}s after the fault"
                self.log(f"fault: {rec['part']}: {rec['error']}")
                break
            time.sleep(1)
        rec["settled_s"] = round(time.monotonic() - t, 1)
        self.log(f"fault: {rec['part']}: redundancy restored after {rec['settled_s']}s")

    def _resolve(self, part):
        """The part a role names now (the primary of a database, the Redis master)."""
        if part.startswith(PRIMARY_OF):
            return self.stack.primary(part[len(PRIMARY_OF):])
        if part == REDIS_MASTER:
            return self.stack.redis_master()
        return part

    def _freeze(self, rec, part, secs):
        rec["t_start"] = time.time()
        self.log(f"fault: SIGSTOP {part} at order {rec['at_order']} for {secs:.1f}s")
        self.stack.freeze(part, secs)
        t = time.monotonic()
        # Frozen parts do not restart: they answer again by themselves (or not). Asked
        # once more after it answered, a part just thawed may fail a check it passed a
        # moment ago (a readiness probe's timeout): the first answer is what counts.
        answered = False
        while not answered and time.monotonic() - t < 60:
            answered = self.stack.serving(part)
            if not answered:
                time.sleep(0.5)
        rec["restart_s"] = round(time.monotonic() - t, 1)
        if not answered:
            rec["error"] = f"{part} does not answer 60s after SIGCONT"
        self.log(f"fault: {part} answers {rec['restart_s']}s after SIGCONT")

    def _kill(self, rec, part, down_s):
        # Never SIGKILL a PostgreSQL that is not up: `stack.sh kill` takes the pid
        # from postmaster.pid, which after a crash may name a pid the system has
        # since given to another process. (A service just after a Kafka restart may
        # be alive and not ready yet: killing it is a fair fault.)
        if part.startswith("postgres/") and not self.stack.serving(part):
            raise RuntimeError(f"{part} does not answer before its fault; not killed")
        rec["t_start"] = time.time()
        self.stack.kill(part)
        self.log(f"fault: SIGKILL {part} at order {rec['at_order']}, down {down_s:.1f}s")
        time.sleep(down_s)
        t = time.monotonic()
        self.stack.start(part)
        rec["restart_s"] = round(time.monotonic() - t, 1)
        if not self.stack.serving(part):
            rec["error"] = (f"`stack.sh start {part}` returned after {rec['restart_s']}s"
                            " but it does not answer")
        self.log(f"fault: {part} back after {rec['restart_s']}s of start-up")

    def _recover(self, part, timeout=120):
        """Starts the part again until it answers, so that the run goes on and its
        invariants are still checked; seconds it took, or None."""
        if part.startswith(PRIMARY_OF) or part == REDIS_MASTER:
            return None  # no part was found for the role: nothing to start
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            try:
                self.stack.start(part)
            except Exception as e:
                self.log(f"fault: start {part} again: {e}")
            if self.stack.serving(part):
                self.log(f"fault: {part} answers again after {time.monotonic() - t:.1f}s")
                return round(time.monotonic() - t, 1)
            time.sleep(2)
        return None
