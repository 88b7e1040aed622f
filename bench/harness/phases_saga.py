"""Phases 4-5: the saga's throughput and latency, and its CPU cost per order.

Orders are posted open-loop by bench_sagaload and watched to CONFIRMED on order.events.
Before each run the harness waits until no order is PENDING, so that a run never pays
for the previous run's backlog. The CPU cost windows cover the whole bench_sagaload run:
its Kafka consumer's start, the sending window, and the drain until every order has an
outcome, so each order's whole saga is inside its window.
"""

import time

from . import cpu, pgss
from .breakdown import breakdown_saga, metrics_snap
from .util import PhaseFailed, psql, say

SETTLE_S = 120
PEAK_FOLLOW = 0.8  # a step holds when confirmed/s >= 80 % of the offered rate ...
PEAK_P50_MS = 1000  # ... and the end-to-end p50 stays under 1 s


def pending_orders(ctx):
    """How many orders are PENDING (None if the order database did not answer)."""
    out = psql(ctx.stack.url("order"), "SELECT count(*) FROM orders WHERE status = 'PENDING'",
               quiet=True)
    return int(out) if out and out.isdigit() else None


def settle(ctx) -> None:
    """Waits (up to 2 minutes) until no order is PENDING: the last run's backlog done."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        if pending_orders(ctx) == 0:
            return
        time.sleep(0.5)
    say(f"orders still PENDING after 2 minutes: {pending_orders(ctx)}")


def _orders(ctx, rate: float, seconds: float):
    """One open-loop run; a run that produced no report fails the phase."""
    report, loadgen_s = ctx.load.orders(rate, seconds)
    if report is None:
        raise PhaseFailed(f"bench_sagaload orders at {rate}/s gave no report")
    return report, loadgen_s


def _step_holds(report: dict, rate: float) -> bool:
    """Confirmed/s follows the offered rate and the queue does not grow (an unknown p50,
    orders that never confirmed, counts as a grown queue)."""
    p50 = (report.get("e2e_ms") or {}).get("p50")
    got = report.get("confirmed_rps") or 0
    return got >= PEAK_FOLLOW * rate and p50 is not None and p50 <= PEAK_P50_MS


def saga_steps(ctx) -> None:
    """Rising rates until confirmed/s stops following. On a shared machine one stall can
    fail a step: a step fails only if it fails twice. The peak is the largest
    confirmed/s seen (a catch-up after a stall shows as capacity too); it is recorded
    even when a run fails midway."""
    ctx.customers.fresh()
    steps = []
    ctx.results.put("saga.steps", steps)
    try:
        for rate in ctx.cfg.steps:
            if not _try_step(ctx, rate, steps):
                break
    finally:
        rates = [s.get("confirmed_rps") or 0 for s in steps]
        ctx.results.put("saga.peak_confirmed_rps", max(rates) if rates else None)


def _try_step(ctx, rate: float, steps: list) -> bool:
    """One offered rate, tried at most twice; True when it held."""
    for attempt in (1, 2):
        settle(ctx)
        report, _ = _orders(ctx, rate, ctx.cfg.t["step"])
        steps.append(report)
        p50 = (report.get("e2e_ms") or {}).get("p50")
        say(f"  offered {rate}/s: confirmed {report.get('confirmed_rps')}/s, "
            f"e2e p50 {p50 if p50 is not None else 1e9} ms (try {attempt})")
        if _step_holds(report, rate):
            return True
    return False


def _ready(ctx) -> None:
    """Before a measured run: no backlog, and tokens that will not expire during it."""
    settle(ctx)
    ctx.customers.fresh()


def _cost_run(ctx, rate: float, seconds: float):
    """A run of orders inside a CPU window: (report, cost per confirmed order in ms per
    group, the load generator apart)."""
    with cpu.Window(ctx.stack.data) as window:
        report, loadgen_s = _orders(ctx, rate, seconds)
    return report, window.per_unit(report.get("confirmed"), 1e3, loadgen_s)


def fixed_rate_cost(ctx) -> None:
    """CPU per order at SAGA_COST_RATE (40/s by default): the half-peak rate moves from
    one version to the next, this one stays, and it is the rate the issue measured."""
    rate, seconds = ctx.cfg.cost_rate, ctx.cfg.t["cost"]
    ctx.results.put("saga.fixed_rate_cost", {"rate": rate, "seconds": seconds,
                                             "confirmed": None, "cpu_ms_per_order": None})
    _ready(ctx)
    if pgss.enabled():
        pgss.reset(ctx)
    report, cost = _cost_run(ctx, rate, seconds)
    ctx.results.put("saga.fixed_rate_cost", {"rate": rate, "seconds": seconds,
                                             "confirmed": report.get("confirmed"),
                                             "e2e_ms": report.get("e2e_ms"),
                                             "cpu_ms_per_order": cost})
    if pgss.enabled():
        ctx.results.put("saga.fixed_rate_cost.pg_statements",
                        pgss.collect(ctx, report.get("confirmed")))


def saga_half(ctx) -> None:
    """Latency at half of the peak (the saga is not queueing there), with the programs'
    histograms and the outbox rows around it for the breakdown, and its CPU per order."""
    peak = ctx.results.get_path("saga.peak_confirmed_rps")
    if not peak:
        raise PhaseFailed("no saga peak to halve")
    rate = round(max(peak / 2, 1))
    _ready(ctx)
    since = time.time()
    before = metrics_snap(ctx)
    report, cost = _cost_run(ctx, rate, ctx.cfg.t["half"])
    after = metrics_snap(ctx)
    ctx.results.put("saga.half_peak", report)
    ctx.results.put("saga.cpu_ms_per_order", cost)
    breakdown_saga(ctx, before, after, since)


WARMUP_RATE = 150  # orders/s: enough requests for the broker's JIT to compile its paths


def warmup(ctx) -> None:
    """Orders at WARMUP_RATE (or the cost rate if higher), unmeasured, for as long as the
    cost run: the broker's JIT compiles its hot paths (at 40/s, 20 s are not enough:
    the run that followed cost Kafka 15 % more than after the saga steps), and the
    services' pools and prepared statements fill."""
    _ready(ctx)
    _orders(ctx, max(WARMUP_RATE, ctx.cfg.cost_rate), ctx.cfg.t["cost"])
