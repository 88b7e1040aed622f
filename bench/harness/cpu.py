"""CPU time of the stack, per process group, read from /proc/<pid>/stat.

docs/architecture.md §8 judges costs as CPU per unit of work, because on a shared machine
CPU per unit is far steadier than throughput. A group is every process of one part of
the stack: a program (all its instances), a PostgreSQL cluster, the Kafka broker, Redis.
A snapshot is each group's utime + stime in clock ticks; a window is the difference of
two snapshots. The load generator is not in any group: it is measured from its own
rusage (util.finish) and reported apart, outside `total`.
"""

import os
import time
from pathlib import Path

from . import fleet
from .util import jround, say

HZ = os.sysconf("SC_CLK_TCK")
SERVICES = tuple(r.name for r in fleet.services())  # deploy/fleet.conf
# A program's group is its name with '_' for '-': order-svc -> order_svc.
_PROGRAM_GROUPS = {r.program: r.program.replace("-", "_") for r in fleet.programs()}
STACK_GROUPS = ("kafka", *(f"pg_{s}" for s in SERVICES), *_PROGRAM_GROUPS.values(), "redis")


def _proc_table() -> dict:
    """pid -> (ppid, own ticks, reaped children's ticks) of every live process, read in
    one pass so that a snapshot is as close to one instant as /proc allows. Fields after
    the ')' that ends the command name: state is field 3, so field N is rest[N - 3]."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                rest = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we listed /proc
        own = int(rest[14 - 3]) + int(rest[15 - 3])
        reaped = int(rest[16 - 3]) + int(rest[17 - 3])
        table[int(entry.name)] = (int(rest[4 - 3]), own, reaped)
    return table


def _pid_in(path: Path):
    """The pid on the first line of a pid file (postmaster.pid too), or None."""
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _postgres(table: dict, pg_dir: Path):
    """A cluster: the postmaster's own ticks, those of every live child (backends,
    walwriter, checkpointer, ...), and the postmaster's cutime + cstime, which holds the
    children that exited and were reaped (backends that came and went in the window)."""
    pm = _pid_in(pg_dir / "postmaster.pid")
    if pm not in table:
        return None
    _, own, reaped = table[pm]
    return own + reaped + sum(t[1] for t in table.values() if t[0] == pm)


def _group_of(part: str):
    """The group of a pid file's name: gateway, order-svc-2 -> order_svc, kafka, redis."""
    program, _, k = part.rpartition("-")
    if k.isdigit() and program in _PROGRAM_GROUPS:
        return _PROGRAM_GROUPS[program]
    return _PROGRAM_GROUPS.get(part) or (part if part in ("kafka", "redis") else None)


def _programs(table: dict, run_dir: Path) -> dict:
    """The groups named by $STACK_DATA/run/*.pid; a program with several instances
    (SCALE > 1) is their sum. A pid file whose process is gone makes its group None."""
    groups = {}
    for pidfile in sorted(run_dir.glob("*.pid")):
        group = _group_of(pidfile.stem)
        if group is None:
            continue
        pid = _pid_in(pidfile)
        ticks = table[pid][1] if pid in table else None
        prev = groups.get(group, 0)
        groups[group] = None if prev is None or ticks is None else prev + ticks
    return groups


def snapshot(data_dir) -> dict:
    """Each stack group's CPU so far, in clock ticks (None where it cannot be read)."""
    data = Path(data_dir)
    table = _proc_table()
    snap = {g: None for g in STACK_GROUPS}
    snap.update(_programs(table, data / "run"))
    for svc in SERVICES:
        snap[f"pg_{svc}"] = _postgres(table, (data / "pg" / svc).resolve())
    return snap


def delta_seconds(start: dict, end: dict) -> dict:
    """CPU seconds per group between two snapshots, and their `total`. A group that
    could not be read, or went backwards (a process restarted in between), is None, and
    so is the total then: a partial sum would flatter the stack."""
    out = {}
    for g in STACK_GROUPS:
        a, b = start.get(g), end.get(g)
        out[g] = (b - a) / HZ if a is not None and b is not None and b >= a else None
    missing = [g for g in STACK_GROUPS if out[g] is None]
    if missing:
        say(f"cpu: no figure for {', '.join(missing)} (process gone or restarted)")
    out["total"] = None if missing else sum(out[g] for g in STACK_GROUPS)
    return out


class Window:
    """`with Window(data_dir) as w:` measures the stack's CPU over the block; after it,
    w.seconds is group -> CPU seconds (with total) and w.wall the block's length."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.seconds = {}
        self.wall = 0.0

    def __enter__(self):
        self._start = snapshot(self.data_dir)
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self._t0
        self.seconds = delta_seconds(self._start, snapshot(self.data_dir))
        return False

    def per_unit(self, units, scale: float, loadgen_s=None, digits: int = 3) -> dict:
        """CPU per unit of work (scale 1e3: ms, 1e6: us) per group, total, and the load
        generator apart; all None when no unit of work was done."""
        def unit(s):
            return jround(s * scale / units, digits) if s is not None and units else None
        table = {g: unit(self.seconds.get(g)) for g in ("total",) + STACK_GROUPS}
        table["loadgen"] = unit(loadgen_s)
        return table

    def pct_of_core(self) -> dict:
        """Each group's CPU as percent of one core over the window's wall time."""
        def pct(s):
            return jround(s / self.wall * 100, 2) if s is not None and self.wall else None
        return {g: pct(self.seconds.get(g)) for g in ("total",) + STACK_GROUPS}


def idle_pct(data_dir, seconds: float) -> dict:
    """The stack's CPU with nothing to do (after seeding, before any load), as percent
    of one core: what the fleet costs just by being up (consumers polling, timers)."""
    with Window(data_dir) as w:
        time.sleep(seconds)
    return w.pct_of_core()
