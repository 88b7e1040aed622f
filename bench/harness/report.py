"""The printed table: figures next to their baselines, CPU per group, targets.

Columns are aligned as the old harness's `align` did: each column as wide as its widest
cell plus two spaces. The figures table and the targets table share their widths (as
before); the CPU table, with its own columns, is aligned on its own.
"""

from .cpu import STACK_GROUPS
from .util import jround


def n(x) -> str:
    """A figure for the eye: n/a when missing, whole from 1000, one decimal from 10,
    two below (what the old harness printed)."""
    if x is None:
        return "n/a"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    digits = 0 if abs(x) >= 1000 else 1 if abs(x) >= 10 else 2
    return str(jround(x, digits))


def _pair(a, b) -> str:
    return f"{n(a)} / {n(b)}"


def figures(r) -> list:
    """The figures table: each measured figure, its baseline, their ratio."""
    g = r.get_path
    rate, hello = r.get_path("settings.fixed_rate_rps"), n(g("http_floor.wrk.rps"))
    gw, d = "gateway_read.fixed_rate.latency_us", "gateway_read.grpc_direct_fixed_rate.latency_us"
    rows = [
        ("figure", "value", "baseline", "ratio"),
        ("HTTP floor (hello), req/s", hello, "-", "-"),
        ("gateway GET /products/{id}, req/s", n(g("gateway_read.wrk.rps")), f"{hello} hello",
         n(g("ratios.gateway_read_vs_http_floor"))),
        ("gRPC GetProduct direct (ghz), req/s", n(g("gateway_read.grpc_direct_ghz.rps")),
         f"{hello} hello", n(g("ratios.grpc_direct_vs_http_floor"))),
        (f"at {n(rate)} req/s: gateway p50 / p99, us", _pair(g(gw + ".p50"), g(gw + ".p99")),
         _pair(g(d + ".p50"), g(d + ".p99")) + " gRPC", "-"),
        (f"at {n(rate)} req/s: hello p50 / p99, us",
         _pair(g("http_floor.fixed_rate.latency_us.p50"), g("http_floor.fixed_rate.latency_us.p99")),
         "-", "-"),
        ("gateway added p50 / p99, us",
         _pair(g("gateway_read.added_latency_us.p50"), g("gateway_read.added_latency_us.p99")), "-", "-"),
        ("saga peak, confirmed orders/s", n(g("saga.peak_confirmed_rps")),
         f"{n(g('saga.pgbench.orders_per_s.min'))} pgbench", n(g("ratios.saga_vs_pgbench"))),
        (f"saga at {n(g('saga.half_peak.offered_rps'))}/s: e2e p50 / p99, ms",
         _pair(g("saga.half_peak.e2e_ms.p50"), g("saga.half_peak.e2e_ms.p99")), "-", "-"),
        ("RSS MiB at rest / under load / peak", " / ".join(n(g(f"footprint.{k}.total")) for k in
                                                           ("at_rest_mib", "under_load_mib", "peak_mib")),
         "-", "-"),
    ]
    for part, run in (g("footprint.startup_ms") or {}).items():
        rows.append((f"start-up to /readyz, {part}, ms", n((run or {}).get("median")), "-", "-"))
    rows.append(("yardstick: pgbench tpcb-like, order cluster, tps",
                 n(g("machine.pgbench_tpcb_tps")), "-", "-"))
    return rows


def cpu_rows(r) -> list:
    """The CPU table: per group, idle % of a core, us per read request, ms per order at
    half of the peak and at the fixed cost rate; the load generator apart, last."""
    g = r.get_path
    half, cost = n(g("saga.half_peak.offered_rps")), n(g("saga.fixed_rate_cost.rate"))
    rows = [("CPU by group", "idle, % of a core", "us per read request",
             f"ms per order at {half}/s (half peak)", f"ms per order at {cost}/s")]
    for group in STACK_GROUPS + ("total", "loadgen"):
        idle = "-" if group == "loadgen" else n(g(("idle_cpu_pct", group)))
        rows.append((group if group != "loadgen" else "loadgen (not in total)", idle,
                     n(g(("gateway_read", "cpu_us_per_request", group))),
                     n(g(("saga", "cpu_ms_per_order", group))),
                     n(g(("saga", "fixed_rate_cost", "cpu_ms_per_order", group)))))
    return rows


def target_rows(r) -> list:
    """The targets table: value with its unit, target, met or NOT MET."""
    rows = [("target (docs/architecture.md §8)", "value", "target", "met")]
    for name, t in (r.get("targets") or {}).items():
        rows.append((name, f"{n(t['value'])} {t['unit']}", n(t["target"]),
                     "met" if t["met"] else "NOT MET"))
    return rows


def _widths(rows: list) -> list:
    widths = []
    for row in rows:
        for i, cell in enumerate(row):
            if i == len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell))
    return widths


def align(rows: list, widths: list) -> str:
    """Rows as lines of columns padded to widths + 2 (the last column unpadded)."""
    return "\n".join("".join(c.ljust(widths[i] + 2) if i < len(row) - 1 else c
                             for i, c in enumerate(row)) for row in rows)


def table(results) -> str:
    """The whole printed report."""
    figs, targets, cpu = figures(results), target_rows(results), cpu_rows(results)
    shared = _widths(figs + targets)
    return "\n\n".join((align(figs, shared), align(cpu, _widths(cpu)), align(targets, shared)))
