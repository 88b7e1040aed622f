"""Phase: what tracing costs (issue 19) — CPU per authenticated read and per confirmed
order, summed over every process of the stack, with every program sampling
always_on and then always_off.

The four programs are restarted with OTEL_TRACES_SAMPLER set (through the stack's
<PROGRAM>_ENV_<NAME> settings) in A-B-B-A order: on, off, off, on, so that a burst of
someone else's work on the shared machine lands on both sides. Each side reports the
mean of its two runs. Spans go to the receiver the stack names
(OTEL_EXPORTER_OTLP_ENDPOINT of `stack.sh env`, else of the harness's environment);
without one, "on" records nothing and the phase says so in trace_cost.exporting. At the end the programs are restarted with
the stack's own settings, so the phases after this one see the fleet as it was.
"""

import os
import signal
import time

from . import cpu
from .phases_read import read_url
from .phases_saga import _cost_run, _orders, _ready, warmup
from .util import PhaseFailed, jround, say

SAMPLERS = ("always_on", "always_off")
ORDER = ("always_on", "always_off", "always_off", "always_on")  # A-B-B-A
GONE_WAIT_S = 30


def _prefix(part: str) -> str:
    """The stack's settings prefix of a part: order-svc-1 -> ORDER_SVC, gateway -> GATEWAY."""
    name = part.rsplit("-", 1)[0] if part != "gateway" else part
    return name.upper().replace("-", "_")


def _restart(ctx, env: dict) -> None:
    """SIGTERM every program (each drains and flushes its spans), then start it again
    with env added to the stack's settings."""
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


def _endpoint(ctx):
    return (ctx.stack.env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _sampler_env(ctx, sampler: str) -> dict:
    env = {}
    for part in ctx.stack.programs:
        env[f"{_prefix(part)}_ENV_OTEL_TRACES_SAMPLER"] = sampler
        # The bench stack runs with export off (config.TRACING_OFF_ENV): on here.
        env[f"{_prefix(part)}_ENV_OTEL_TRACES_EXPORTER"] = "otlp"
        if _endpoint(ctx):
            env[f"{_prefix(part)}_ENV_OTEL_EXPORTER_OTLP_ENDPOINT"] = _endpoint(ctx)
    return env


def _one(ctx, sampler: str) -> dict:
    """The fleet restarted with sampler, warmed up by one unmeasured read run and one
    order run (connections, consumer groups rejoined, prepared statements, the broker
    busy with the restarts' rebalances), then one read run and one order run, each
    inside its CPU window."""
    _restart(ctx, _sampler_env(ctx, sampler))
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
    say(f"  {sampler}: {read.get('total')} us per read, {order.get('total')} ms per order")
    return {"sampler": sampler, "read_cpu_us": read, "order_cpu_ms": order}


def _mean(runs: list, sampler: str, key: str):
    vals = [r[key].get("total") for r in runs if r["sampler"] == sampler]
    vals = [v for v in vals if v is not None]
    return jround(sum(vals) / len(vals), 3) if vals else None


def _delta(on, off):
    if on is None or off is None:
        return {"delta": None, "delta_pct": None}
    return {"delta": jround(on - off, 3),
            "delta_pct": jround((on - off) / off * 100, 1) if off else None}


def trace_cost(ctx) -> None:
    """on, off, off, on; then the fleet as the stack starts it."""
    runs = []
    exporting = bool(_endpoint(ctx))
    ctx.results.put("trace_cost", {"exporting": exporting, "runs": runs,
                                   "read_rate_rps": ctx.rate_fixed,
                                   "order_rate": ctx.cfg.cost_rate,
                                   "read_cpu_us_per_request": None,
                                   "order_cpu_ms_per_order": None})
    if not exporting:
        say("trace_cost: no OTEL_EXPORTER_OTLP_ENDPOINT: always_on records nothing")
    ctx.customers.fresh()
    if not ctx.cfg.wants("saga") and not ctx.cfg.quick:
        # Alone (BENCH_ONLY=trace) the broker is cold: its JIT made the phase's first
        # run the dearest whichever sampler it had (seen in A-B-B-A and B-A-A-B runs).
        warmup(ctx)
    try:
        for sampler in ORDER:
            runs.append(_one(ctx, sampler))
    finally:
        _restart(ctx, {})
    for key, unit in (("read_cpu_us", "read_cpu_us_per_request"),
                      ("order_cpu_ms", "order_cpu_ms_per_order")):
        on, off = _mean(runs, "always_on", key), _mean(runs, "always_off", key)
        ctx.results.put(("trace_cost", unit), {"always_on": on, "always_off": off,
                                               **_delta(on, off)})
