"""What the figures were measured on and with: machine, versions, settings.

A figure is only read next to these: the machine is shared (load average at start), the
libraries and servers change between runs, and each phase's settings say what was
offered.
"""

import os
import subprocess
from pathlib import Path

from .config import CONNS, WRK_THREADS
from .cpu import HZ
from .tools import GO
from .util import psql, run

DEB_PACKAGES = ("libmicrohttpd12", "libgrpc29", "librdkafka1", "libpq5", "libprotobuf-c1",
                "libjansson4", "libjwt0", "libhiredis0.14", "libargon2-1", "postgresql-15",
                "redis-server", "wrk")
PREFIX = "GATEWAY_ENV_"


def _first_line(path: str, prefix: str):
    """The value after ': ' of the first line of a /proc file starting with prefix."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine(load_at_start: str) -> dict:
    """nproc (the CPUs this process may use, as nproc counts), CPU model, kernel, memory,
    and the load average read when the harness started (before the stack was up)."""
    mem = _first_line("/proc/meminfo", "MemTotal") or "0 kB"
    return {"nproc": len(os.sched_getaffinity(0)),
            "model": _first_line("/proc/cpuinfo", "model name"),
            "kernel": os.uname().release, "memory_mib": int(mem.split()[0]) // 1024,
            "loadavg_at_start": load_at_start}


def _out(args, cwd=None) -> str:
    """A command's stdout, stripped; empty when it fails or is missing."""
    try:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              cwd=cwd, check=False).stdout.strip()
    except OSError:
        return ""


def _ghz_version(ghz) -> str:
    """ghz's module version, from its build info (go version -m)."""
    if not ghz:
        return ""
    for line in _out([GO, "version", "-m", ghz]).splitlines():
        words = line.split()
        if words[:1] == ["mod"] and len(words) > 2:
            return words[2]
    return ""


def versions(ctx, ghz) -> dict:
    """Library and server versions, and the commit (-dirty with local changes)."""
    out = {p: (run(["dpkg-query", "-W", "-f=${Version}", p], quiet=True).out or "unknown")
           for p in DEB_PACKAGES}
    cache = Path(ctx.cfg.go_bin).parent
    kafka = sorted(d.name[len("kafka-"):] for d in cache.glob("kafka-*"))
    root = ctx.cfg.root
    commit = _out(["git", "rev-parse", "--short", "HEAD"], root)
    dirty = "-dirty" if _out(["git", "status", "--porcelain"], root) else ""
    out.update(gcc=_out(["gcc", "--version"]).split("\n")[0],
               postgres=psql(ctx.stack.url("order"), "SHOW server_version") or "",
               kafka=kafka[0] if kafka else "", ghz=_ghz_version(ghz), commit=commit + dirty)
    return out


def settings(ctx) -> None:
    """Connections, threads, durations and rates of this run, into results.settings."""
    t, put = ctx.cfg.t, ctx.results.put
    put("settings.quick", ctx.cfg.quick)
    put("settings.connections", CONNS)
    put("settings.wrk_threads", WRK_THREADS)
    put("settings.http_threads", ctx.http_threads)
    put("settings.scale", 1)
    put("settings.programs_from", ctx.stack.programs_from)
    put("settings.seconds", {
        "saturation": t["load"], "fixed_rate": t["fixed"], "saga_step": t["step"],
        "saga_half_peak": t["half"], "pgbench": t["pg"], "idle_cpu": t["idle"],
        "saga_fixed_rate_cost": t["cost"], "pgbench_tpcb": t["tpcb"]})
    put("settings.saga_steps_offered", list(ctx.cfg.steps))
    put("settings.fixed_rate_rps", ctx.rate_fixed)
    put("settings.saga_cost_rate", ctx.cfg.cost_rate)
    put("settings.cpu", {"clock_ticks_per_s": HZ,
                         "gateway_read_run": "the first gateway fixed-rate run"})
    put("settings.gateway_env", {k[len(PREFIX):]: v for k, v in os.environ.items()
                                 if k.startswith(PREFIX)})
