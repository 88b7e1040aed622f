"""Phase 7: what the four programs hold in memory, and how fast each starts.

RSS at rest (after seeding), sampled every second under load, VmHWM at the end; what the
resident pages are (smaps_rollup); then each program's start-up to its first 200 on
/readyz, timed by bench_sagaload with the running instance's own environment.
"""

import os
import shutil
import signal
import threading
import time

from .util import jround, say

SAMPLE_EVERY_S = 1.0
STOP_WAIT_S = 30.0
SMAPS_KEYS = ("Rss", "Pss", "Anonymous", "Shared_Clean", "Shared_Dirty")


def _status_kib(pid, key: str) -> int:
    """A /proc/<pid>/status figure in KiB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return 0


def _mib(kib) -> float:
    return jround(kib / 1024, 1)


def rss_mib(pid):
    """One process's VmRSS in MiB, or None when it is gone."""
    kib = _status_kib(pid, "VmRSS")
    return _mib(kib) if kib else None


class PeakRss:
    """The largest VmRSS of some processes while a `with` block runs, sampled every
    `every` s in a thread. `pids` maps a name to a pid, or to a function returning the
    current pid (a program restarted inside the block)."""

    def __init__(self, pids: dict, every: float = 0.5):
        self.pids, self.every = pids, every
        self.kib = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-peak", daemon=True)

    def _loop(self) -> None:
        while True:
            for name, pid in self.pids.items():
                now = _status_kib(pid() if callable(pid) else pid, "VmRSS")
                self.kib[name] = max(self.kib[name], now)
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        self._thread.join()
        return False

    def mib(self, name):
        """The peak of `name` in MiB, or None when it was never seen."""
        return _mib(self.kib[name]) if self.kib[name] else None


def rss_now(ctx, key: str) -> dict:
    """VmRSS or VmHWM of each program in MiB, and their sum."""
    kib = {p: _status_kib(ctx.stack.pid_of(p), key) for p in ctx.stack.programs}
    return {**{p: _mib(v) for p, v in kib.items()}, "total": _mib(sum(kib.values()))}


def smaps(ctx) -> dict:
    """What the resident pages are at the end of the load: most of each program's RSS is
    shared libraries (the same pages in all four), which a sum of RSS counts four times.
    `together` counts them once: sum of Anonymous + the largest shared part."""
    out = {}
    for p in ctx.stack.programs:
        fields = {}
        try:
            with open(f"/proc/{ctx.stack.pid_of(p)}/smaps_rollup") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    if name in SMAPS_KEYS:
                        fields[name] = _mib(int(rest.split()[0]))
        except OSError:
            pass
        out[p] = fields
    anon = sum(v.get("Anonymous", 0) for v in out.values())
    shared = max((v.get("Shared_Clean", 0) + v.get("Shared_Dirty", 0) for v in out.values()),
                 default=0)
    out["together"] = jround(anon + shared, 1)
    return out


class Sampler:
    """Every program's VmRSS each second, in a background thread, through the load."""

    def __init__(self, ctx):
        self.pids = {p: ctx.stack.pid_of(p) for p in ctx.stack.programs}
        self.samples: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append({p: _status_kib(pid, "VmRSS") for p, pid in self.pids.items()})
            self._stop.wait(SAMPLE_EVERY_S)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the thread (also on the exit path; harmless twice)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def under_load(self) -> dict:
        """Each program's largest sample, and the largest sum of one sample of all, MiB."""
        out = {p: _mib(max((s[p] for s in self.samples), default=0)) for p in self.pids}
        out["total"] = _mib(max((sum(s.values()) for s in self.samples), default=0))
        return out


def _wait_gone(pid: int) -> None:
    """Until the stopped program's process is gone (it drains on SIGTERM)."""
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat"):
                pass
        except OSError:
            return
        time.sleep(0.1)


def _readyz_url(environ: bytes) -> str:
    """/readyz on the program's admin address (a service) or listen address (gateway)."""
    for var in environ.split(b"\0"):
        name, _, value = var.decode(errors="replace").partition("=")
        if name in ("ADMIN_ADDR", "GATEWAY_ADDR"):
            return f"http://{value}/readyz"
    return None


def _median(values: list):
    """The middle of the runs that gave a figure (upper middle for an even count)."""
    ok = sorted(v for v in values if v is not None)
    return ok[len(ok) // 2] if ok else None


def startup_one(ctx, part: str) -> dict:
    """Stops the stack's instance, times the same binary with the same environment
    STARTUP_RUNS times, then lets the stack start its own instance again."""
    pid = ctx.stack.pid_of(part)
    if pid is None or not os.path.exists(f"/proc/{pid}"):
        say(f"{part} is not running: no start-up figure")
        return {"runs": [], "median": None}
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        program = f.read().split(b"\0")[0].decode()
    env_file = ctx.work / f"{part}.env"
    shutil.copyfile(f"/proc/{pid}/environ", env_file)
    url = _readyz_url(env_file.read_bytes())
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)
    runs = []
    for _ in range(ctx.cfg.startup_runs):
        report = ctx.load.startup(url, env_file, ctx.stack.data / "log" / f"{part}.log", program)
        runs.append((report or {}).get("startup_ms"))
    if not ctx.stack.start(part):
        say(f"{part} did not come back")
    return {"runs": runs, "median": _median(runs)}


def startup(ctx) -> None:
    """Time from exec to the first 200 on /readyz, dependencies up, for each program."""
    for part in ctx.stack.programs:
        ctx.results.put(("footprint", "startup_ms", part), startup_one(ctx, part))

