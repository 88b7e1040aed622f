"""`bench.py --check-keys FILE`: every key bench/README.md documents is in a results.json.

make test runs it on the quick run's output, so that the harness and its documentation
cannot drift apart. Values may be null (a figure that could not be taken); the keys must
be there, and every target in the {value, target, unit, met} form.
"""

import json
import sys

from .cpu import STACK_GROUPS
from .targets import TARGETS

COST_GROUPS = ("total",) + STACK_GROUPS
DOCUMENTED = [
    "http_floor.wrk", "http_floor.fixed_rate",
    "gateway_read.wrk", "gateway_read.fixed_rate", "gateway_read.grpc_direct_ghz",
    "gateway_read.grpc_direct_fixed_rate", "gateway_read.added_latency_us",
    "gateway_read.breakdown_mean_us",
    "saga.steps", "saga.peak_confirmed_rps", "saga.half_peak", "saga.breakdown", "saga.pgbench",
    "saga.fixed_rate_cost.rate", "saga.fixed_rate_cost.seconds", "saga.fixed_rate_cost.confirmed",
    "saga.fixed_rate_cost.cpu_ms_per_order",
    "footprint.at_rest_mib", "footprint.under_load_mib", "footprint.peak_mib",
    "footprint.startup_ms", "footprint.smaps_at_end_mib",
    "ratios.gateway_read_vs_http_floor", "ratios.saga_vs_pgbench",
    "machine.nproc", "machine.model", "machine.kernel", "machine.pgbench_tpcb_tps",
    "versions.gcc", "versions.postgres", "versions.libmicrohttpd12",
    "settings.connections", "settings.seconds", "settings.phase_seconds", "settings.pgbench_tpcb",
    "trace_cost.exporting", "trace_cost.runs", "trace_cost.read_cpu_us_per_request",
    "trace_cost.order_cpu_ms_per_order",
    "security_cost.runs", "security_cost.read_cpu_us_per_request",
    "security_cost.order_cpu_ms_per_order",
]
DOCUMENTED += [f"saga.cpu_ms_per_order.{g}" for g in COST_GROUPS + ("loadgen",)]
DOCUMENTED += [f"gateway_read.cpu_us_per_request.{g}" for g in COST_GROUPS + ("loadgen",)]
DOCUMENTED += [f"idle_cpu_pct.{g}" for g in COST_GROUPS]
MIN_STARTUP_TARGETS = 4


def _has(root: dict, path: str) -> bool:
    """The key is there (its value may be null); its parent is an object."""
    *parents, last = path.split(".")
    node = root
    for k in parents:
        node = node.get(k) if isinstance(node, dict) else None
    return isinstance(node, dict) and last in node


def missing(results: dict) -> list:
    """What the results lack, in words; empty when every documented key is there."""
    out = [k for k in DOCUMENTED if not _has(results, k)]
    targets = results.get("targets")
    if not isinstance(targets, dict):
        return out + ["targets"]
    out += [f"targets.{name}" for name in TARGETS if name not in targets]
    out += [f"targets.{name} is not {{value, target, unit, met}}" for name, t in targets.items()
            if not (isinstance(t, dict) and {"value", "target", "unit"} <= t.keys()
                    and isinstance(t.get("met"), bool))]
    if sum(1 for name in targets if name.startswith("startup_ms_")) < MIN_STARTUP_TARGETS:
        out.append(f"targets.startup_ms_* (fewer than {MIN_STARTUP_TARGETS})")
    return out


def check(path: str) -> int:
    """Exit status for --check-keys: 0 when complete, 1 with what is missing."""
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        print(f"bench: {path}: {e}", file=sys.stderr)
        return 1
    lack = missing(results) if isinstance(results, dict) else ["(not a JSON object)"]
    for what in lack:
        print(f"bench: {path} lacks {what}", file=sys.stderr)
    return 1 if lack else 0
