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
    for key, what in (("read_cpu_us_per_request", "us CPU per read"),
                      ("order_cpu_ms_per_order", "ms CPU per order")):
        t = g(("trace_cost", key)) or {}
        if t:
            rows.append((f"tracing on / off, {what} (stack)",
                         _pair(t.get("always_on"), t.get("always_off")),
                         "always_off", f"{n(t.get('delta_pct'))} %"))
        t = g(("security_cost", key)) or {}
        if t:
            rows.append((f"security on / off, {what} (stack)", _pair(t.get("on"), t.get("off")),
                         "off", f"{n(t.get('delta_pct'))} %"))
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


def peer_rows(r) -> list:
    """The peers side by side (issue 17): each figure for C and for the peer, and how many
    times better C is (> 1: C ahead). Empty when no peer phase ran."""
    g = r.get_path
    rows = []
    c, p = "peers.c_gateway.", "peers.nestjs_gateway."
    if g("peers.nestjs_gateway"):
        for label, cp, pp, ratio in (
                ("read GET /products/{id}, req/s", "read_wrk.rps", None, "read_rps"),
                ("read p50 / p99 at fixed rate, us", "read_fixed_rate.latency_us", None, None),
                ("read CPU per request, gateway, us", "read_cpu_us_per_request.gateway", None,
                 "read_cpu_per_request"),
                ("order HTTP p50 / p99, ms", "orders.http_ms", None, None),
                ("order CPU per order, gateway, ms", "order_cpu_ms_per_order.gateway", None,
                 "order_cpu_per_order"),
                ("RSS at rest / under load, MiB", None, None, None),
                ("start-up to /readyz, ms", "startup_ms.median", None, "startup")):
            if cp is None:  # RSS
                cv = _pair(g(c + "rss_at_rest_mib"), g(c + "rss_under_load_mib"))
                pv = _pair(g(p + "rss_at_rest_mib"), g(p + "rss_under_load_mib"))
                rv = _pair(g("ratios.c_vs_nestjs_rss_at_rest"), g("ratios.c_vs_nestjs_rss_under_load"))
            elif cp.endswith(("latency_us", "http_ms")):
                cv = _pair(g(c + cp + ".p50"), g(c + cp + ".p99"))
                pv = _pair(g(p + cp + ".p50"), g(p + cp + ".p99"))
                kind = "read" if "read" in cp else "order"
                rv = _pair(g(f"ratios.c_vs_nestjs_{kind}_p50"), g(f"ratios.c_vs_nestjs_{kind}_p99"))
            else:
                cv, pv, rv = n(g(c + cp)), n(g(p + cp)), n(g("ratios.c_vs_nestjs_" + ratio))
            rows.append(("gateway: " + label, cv, pv, rv))
    go = "peers.go_order_svc."
    if g("peers.go_order_svc.go"):
        for label, key in (("confirmed orders/s (open loop)", "confirmed_rps"),
                           ("e2e p50 at the cost rate, ms", "e2e_p50_ms"),
                           ("e2e p99 at the cost rate, ms", "e2e_p99_ms"),
                           ("CPU per order, order-svc, ms", "cpu_ms_per_order"),
                           ("CPU per order, whole stack, ms", "stack_cpu_ms_per_order"),
                           ("RSS at rest, MiB", "rss_at_rest_mib"),
                           ("RSS under load, MiB", "rss_under_load_mib"),
                           ("start-up to /readyz, ms", "startup_ms")):
            rows.append(("order-svc: " + label, n(g(go + "c." + key)), n(g(go + "go." + key)),
                         n(g("ratios.c_vs_go_order_" + key))))
    return [("peers (bench/peers)", "C", "peer", "C better by")] + rows if rows else []


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
    parts = [align(figs, shared), align(cpu, _widths(cpu)), align(targets, shared)]
    peers = peer_rows(results)
    if peers:
        parts.append(align(peers, _widths(peers)))
    return "\n\n".join(parts)
