"""A-B-B-A cost comparisons of two ways to run the fleet's programs (tracing on/off,
security on/off): the programs restarted with each side's settings in the order
A, B, B, A, so that a burst of someone else's work on the shared machine lands on both
sides; each run measures CPU per authenticated read and per confirmed order, summed over
every process of the stack, and each side reports the mean of its two runs. At the end
the programs are restarted with the stack's own settings, so the phases after see the
fleet as it was.
"""

import os
import signal
import time

from . import cpu
from .phases_read import read_url
from .phases_saga import _cost_run, _orders, _ready, warmup
from .util import PhaseFailed, jround, say

GONE_WAIT_S = 30
UNITS = (("read_cpu_us", "read_cpu_us_per_request"), ("order_cpu_ms", "order_cpu_ms_per_order"))


def prefix(part: str) -> str:
    """The stack's settings prefix of a part: order-svc-1 -> ORDER_SVC, gateway -> GATEWAY."""
    name = part.rsplit("-", 1)[0] if part != "gateway" else part
    return name.upper().replace("-", "_")


def restart(ctx, env: dict) -> None:
    """SIGTERM every program (each drains, flushes its spans), then `stack.sh start` it
    again with env added to the stack's environment."""
    for part in ctx.stack.programs:
        pid = ctx.stack.pid_of(part)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + GONE_WAIT_S
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)
        if ctx.stack.call("start", part, extra_env=env).rc != 0:
            raise PhaseFailed(f"{part} did not come back")


def _one(ctx, label: str, env: dict) -> dict:
    """The fleet restarted with env, warmed up by one unmeasured read run and one order
    run (connections, consumer groups rejoined, prepared statements, the broker busy
    with the restarts' rebalances), then one read run and one order run, each inside
    its CPU window."""
    restart(ctx, env)
    if not ctx.cfg.quick:  # BENCH_QUICK (make test) checks the phase runs, not figures
        ctx.load.get(read_url(ctx), ctx.rate_fixed, ctx.cfg.t["fixed"], ctx.customers.first)
        _ready(ctx)
        _orders(ctx, ctx.cfg.cost_rate, ctx.cfg.t["cost"])
    with cpu.Window(ctx.stack.data) as window:
        report, loadgen_s = ctx.load.get(read_url(ctx), ctx.rate_fixed, ctx.cfg.t["fixed"],
                                         ctx.customers.first)
    read = window.per_unit((report or {}).get("ok"), 1e6, loadgen_s, 1)
    _ready(ctx)
    _, order = _cost_run(ctx, ctx.cfg.cost_rate, ctx.cfg.t["cost"])
    say(f"  {label}: {read.get('total')} us per read, {order.get('total')} ms per order")
    return {"side": label, "read_cpu_us": read, "order_cpu_ms": order}


def _mean(runs: list, label: str, key: str):
    vals = [r[key].get("total") for r in runs if r["side"] == label]
    vals = [v for v in vals if v is not None]
    return jround(sum(vals) / len(vals), 3) if vals else None


def _delta(a, b):
    if a is None or b is None:
        return {"delta": None, "delta_pct": None}
    return {"delta": jround(a - b, 3), "delta_pct": jround((a - b) / b * 100, 1) if b else None}


def compare(ctx, key: str, a: tuple, b: tuple, extra: dict) -> None:
    """Runs a = (label, env) and b in A-B-B-A order and puts under `key`: extra, runs,
    read_rate_rps, order_rate and per unit {<a label>, <b label>, delta, delta_pct}
    (delta = a - b)."""
    runs = []
    ctx.results.put(key, {**extra, "runs": runs, "read_rate_rps": ctx.rate_fixed,
                          "order_rate": ctx.cfg.cost_rate,
                          **{unit: None for _, unit in UNITS}})
    ctx.customers.fresh()
    if not ctx.cfg.wants("saga") and not ctx.cfg.quick:
        # Alone (BENCH_ONLY=...) the broker is cold: its JIT made the phase's first run
        # the dearest whichever side it was (seen in A-B-B-A and B-A-A-B runs).
        warmup(ctx)
    try:
        for label, env in (a, b, b, a):
            runs.append(_one(ctx, label, env))
    finally:
        restart(ctx, {})
    for run_key, unit in UNITS:
        va, vb = _mean(runs, a[0], run_key), _mean(runs, b[0], run_key)
        ctx.results.put((key, unit), {a[0]: va, b[0]: vb, **_delta(va, vb)})
