"""The Go order-svc peer (bench/peers/go-order-svc) next to the C order-svc.

The same stack, data and load; only order-svc-1's binary changes, in the order C, Go,
Go, C (A-B-B-A: a drift of the shared machine over the phase weighs on both alike), and
each figure is the mean of a program's two runs. Per run:

  startup_ms        exec to the first 200 on /readyz (footprint.startup_one: median of
                    the configured runs, dependencies up)
  rss_at_rest_mib   order-svc's VmRSS a few seconds after it started, before any load
  fixed_rate        orders at SAGA_COST_RATE (40/s) for the cost run's length: e2e p50 /
                    p99, CPU per confirmed order of order-svc and of the whole stack
  rss_under_load_mib  order-svc's largest VmRSS, sampled every 0.5 s through both loads
  peak              one open-loop run at PEER_ORDER_PEAK_RATE (default 340/s, just above
                    the C fleet's peak in bench/results.json: it measures capacity, where
                    the saga steps' largest rate would measure a backlog), confirmed
                    orders/s; then the backlog is drained (settle) before the next run

The swap copies the peer over the run's program copy in $BIN_DIR (the stack started
order-svc-1 from there) and lets `stack.sh start` run it with the stack's own settings,
so the peer gets exactly the C program's environment; the C binary is put back at the
end whatever happens. Keys: peers.go_order_svc.{c,go}.<figure>, peers.go_order_svc.runs,
and ratios.c_vs_go_order_<figure>: how many times better C is, as every c_vs_* ratio (> 1:
C ahead): C's over Go's for throughput, Go's over C's for latency, CPU, memory, start-up.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import cpu, footprint
from .phases_saga import _orders, _ready, settle
from .util import PhaseFailed, jround, say

PART = "order-svc-1"
GROUP = "order_svc"
REL = "services/order/order-svc"  # deploy/fleet.conf's path of order-svc
ORDER = ("c", "go", "go", "c")
REST_S = 3.0
PEAK_RATE = 340  # orders/s offered in the peak run (PEER_ORDER_PEAK_RATE)


def _build_peer(ctx) -> Path:
    """bench/peers/go-order-svc/build.sh (skips when up to date); the binary's path."""
    script = ctx.cfg.root / "bench/peers/go-order-svc/build.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        raise PhaseFailed(f"the Go order-svc peer did not build: {done.stderr.strip()[-500:]}")
    return Path(lines[-1])


def _stop_part(ctx) -> None:
    """SIGTERM to order-svc-1 and wait until it is gone (it drains)."""
    pid = ctx.stack.pid_of(PART)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    footprint._wait_gone(pid)


def _run_as(ctx, binary: Path) -> None:
    """order-svc-1 restarted as `binary` (copied over $BIN_DIR's order-svc)."""
    _stop_part(ctx)
    target = Path(os.environ["BIN_DIR"]) / REL
    tmp = target.with_name(target.name + ".swap")
    shutil.copy2(binary, tmp)
    os.replace(tmp, target)
    if not ctx.stack.start(PART):
        raise PhaseFailed(f"{PART} did not start as {binary}")


def _one_run(ctx, peak_rate: float) -> dict:
    """Every figure of the program order-svc-1 runs now."""
    out = {}
    started = footprint.startup_one(ctx, PART)  # restarts the part from $BIN_DIR after
    out["startup_ms"] = started.get("median")
    time.sleep(REST_S)
    out["rss_at_rest_mib"] = footprint.rss_mib(ctx.stack.pid_of(PART))
    rate, seconds = ctx.cfg.cost_rate, ctx.cfg.t["cost"]
    with footprint.PeakRss({PART: lambda: ctx.stack.pid_of(PART)}) as peak:
        _ready(ctx)
        with cpu.Window(ctx.stack.data) as window:
            report, loadgen_s = _orders(ctx, rate, seconds)
        cost = window.per_unit(report.get("confirmed"), 1e3, loadgen_s)
        e2e = report.get("e2e_ms") or {}
        out["fixed_rate"] = {"rate": rate, "seconds": seconds, "confirmed": report.get("confirmed"),
                             "e2e_p50_ms": e2e.get("p50"), "e2e_p99_ms": e2e.get("p99"),
                             "cpu_ms_per_order_order_svc": cost.get(GROUP),
                             "cpu_ms_per_order_total": cost.get("total")}
        _ready(ctx)
        report, _ = _orders(ctx, peak_rate, ctx.cfg.t["step"])
        out["peak"] = {"offered_rps": peak_rate, "confirmed_rps": report.get("confirmed_rps"),
                       "e2e_p50_ms": (report.get("e2e_ms") or {}).get("p50")}
        settle(ctx)  # the next program starts without this one's backlog
    out["rss_under_load_mib"] = peak.mib(PART)
    return out


# The figures compared, as paths into a run's dict.
FIGURES = {
    "confirmed_rps": ("peak", "confirmed_rps"),
    "e2e_p50_ms": ("fixed_rate", "e2e_p50_ms"),
    "e2e_p99_ms": ("fixed_rate", "e2e_p99_ms"),
    "cpu_ms_per_order": ("fixed_rate", "cpu_ms_per_order_order_svc"),
    "stack_cpu_ms_per_order": ("fixed_rate", "cpu_ms_per_order_total"),
    "rss_at_rest_mib": ("rss_at_rest_mib",),
    "rss_under_load_mib": ("rss_under_load_mib",),
    "startup_ms": ("startup_ms",),
}


def _get(run: dict, path: tuple):
    for k in path:
        run = run.get(k) if isinstance(run, dict) else None
    return run


def _mean(values: list):
    ok = [v for v in values if v is not None]
    return jround(sum(ok) / len(ok), 3) if ok else None


def peer_order_phase(ctx) -> None:
    """C, Go, Go, C on order-svc-1; records peers.go_order_svc.* and
    ratios.c_vs_go_order_*."""
    go_bin = _build_peer(ctx)
    c_copy = ctx.work / "order-svc.c"
    shutil.copy2(Path(os.environ["BIN_DIR"]) / REL, c_copy)
    peak_rate = float(os.environ.get("PEER_ORDER_PEAK_RATE") or (40 if ctx.cfg.quick else PEAK_RATE))
    runs = []
    ctx.results.put("peers.go_order_svc.runs", runs)
    try:
        for program in ORDER:
            _run_as(ctx, c_copy if program == "c" else go_bin)
            say(f"  order-svc-1 as {program}: measuring")
            run = {"program": program, **_one_run(ctx, peak_rate)}
            runs.append(run)
            say(f"  {program}: {run.get('peak', {}).get('confirmed_rps')} confirmed/s, "
                f"p50 {run['fixed_rate']['e2e_p50_ms']} ms, "
                f"{run['fixed_rate']['cpu_ms_per_order_order_svc']} ms CPU/order, "
                f"RSS {run['rss_at_rest_mib']}/{run['rss_under_load_mib']} MiB, "
                f"start {run['startup_ms']} ms")
    finally:
        try:
            _run_as(ctx, c_copy)
        except PhaseFailed as e:
            say(f"could not put the C order-svc back: {e}")
    for program in ("c", "go"):
        mine = [r for r in runs if r["program"] == program]
        ctx.results.put(("peers", "go_order_svc", program),
                        {name: _mean([_get(r, path) for r in mine])
                         for name, path in FIGURES.items()})
    c, go = (ctx.results.get_path(f"peers.go_order_svc.{p}") for p in ("c", "go"))
    for name in FIGURES:
        a, b = c.get(name), go.get(name)
        if name != "confirmed_rps":  # lower is better: Go's over C's
            a, b = b, a
        ctx.results.put(("ratios", f"c_vs_go_order_{name}"),
                        jround(a / b, 3) if a is not None and b else None)
