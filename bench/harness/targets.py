"""Ratios and docs/architecture.md §8's targets, computed from the figures at the end.

Each target is {value, target, unit, met}; a figure that could not be taken is not met
(null value, met false), so a missing measurement never passes for a good one.
"""

from .phases_read import added_latency
from .util import jround

# name: (path of the value, target, unit, comparison)
TARGETS = {
    "gateway_read_throughput_ratio": (("ratios", "gateway_read_vs_http_floor"), 0.5, "ratio", "ge"),
    "gateway_added_p50_us": (("gateway_read", "added_latency_us", "p50"), 100, "us", "le"),
    "gateway_added_p99_us": (("gateway_read", "added_latency_us", "p99"), 400, "us", "le"),
    "gateway_read_cpu_us_per_request": (("gateway_read", "cpu_us_per_request", "total"), 250, "us", "le"),
    "saga_throughput_ratio": (("ratios", "saga_vs_pgbench"), 0.5, "ratio", "ge"),
    "saga_peak_confirmed_rps": (("saga", "peak_confirmed_rps"), 400, "orders/s", "ge"),
    "saga_cpu_ms_per_order": (("saga", "cpu_ms_per_order", "total"), 5, "ms", "le"),
    "saga_p50_ms": (("saga", "half_peak", "e2e_ms", "p50"), 10, "ms", "le"),
    "saga_p99_ms": (("saga", "half_peak", "e2e_ms", "p99"), 50, "ms", "le"),
    "kafka_idle_cpu_pct": (("idle_cpu_pct", "kafka"), 2, "% of a core", "le"),
    "footprint_total_mib": (("footprint", "under_load_mib", "total"), 100, "MiB", "le"),
}
STARTUP_TARGET_MS = 200
_CMP = {"ge": lambda v, t: v >= t, "le": lambda v, t: v <= t, "lt": lambda v, t: v < t}


def target(value, goal, unit: str, cmp: str) -> dict:
    """One target in the {value, target, unit, met} form."""
    return {"value": value, "target": goal, "unit": unit,
            "met": value is not None and _CMP[cmp](value, goal)}


def _ratio(a, b):
    """a / b to three decimals; None when either is missing or b is 0."""
    return jround(a / b, 3) if a is not None and b else None


def ratios(results) -> dict:
    """Each figure next to its baseline measured in the same run."""
    g = results.get_path
    return {"gateway_read_vs_http_floor": _ratio(g("gateway_read.wrk.rps"), g("http_floor.wrk.rps")),
            "grpc_direct_vs_http_floor": _ratio(g("gateway_read.grpc_direct_ghz.rps"),
                                                g("http_floor.wrk.rps")),
            "saga_vs_pgbench": _ratio(g("saga.peak_confirmed_rps"),
                                      g("saga.pgbench.orders_per_s.min"))}


def finish(results) -> None:
    """Fills in ratios, the gateway's added latency and the targets."""
    results["ratios"] = {**(results.get("ratios") or {}), **ratios(results)}  # phases' own kept
    results.put("gateway_read.added_latency_us", added_latency(results))
    out = {name: target(results.get_path(path), goal, unit, cmp)
           for name, (path, goal, unit, cmp) in TARGETS.items()}
    for part, run in (results.get_path("footprint.startup_ms") or {}).items():
        out["startup_ms_" + part.replace("-", "_")] = target(
            (run or {}).get("median"), STARTUP_TARGET_MS, "ms", "lt")
    results["targets"] = out
