"""Issue 17: the C gateway next to its NestJS peer (bench/peers/nestjs-gateway).

Both gateways run on the same stack at once: the peer is started with the running C
gateway's own environment (same Redis and key prefix, same JWT secret, same services)
on a port of its own, so the seeded customers' tokens and sessions are valid on both.
Each comparison runs A-B-B-A (C, peer, peer, C) and each side keeps its better run, as
phases_read does. For each gateway:

  req/s          wrk saturation of the read path (GET /api/v1/products/{id}, token)
  fixed rate     bench_sagaload get at one rate for both (a quarter of the slower
                 gateway's saturation): p50/p99, and CPU per request of the gateway's
                 process and of the whole stack (the other gateway idles meanwhile; its
                 CPU is left out of the total)
  orders         bench_sagaload orders (POST /api/v1/orders, watched to CONFIRMED) at
                 SAGA_COST_RATE: HTTP p50/p99, confirmed/s, CPU per order likewise
  RSS            at rest (before any load) and the largest sample under load
  start-up       exec to the first 200 on /readyz (bench_sagaload startup)

Keys: peers.nestjs_gateway.* (and peers.c_gateway.* for the same figures of the C
gateway in this phase), ratios.c_vs_nestjs_*. Runs in a full make bench unless
BENCH_PEERS leaves nestjs-gateway out (BENCH_ONLY=peer_gateway: alone); the peer is
built first
(bench/peers/nestjs-gateway/build.sh, needs node and npm).
"""

import os
import socket
import time
import urllib.request

from . import cpu, footprint
from .phases_read import higher_rps, lower_p50
from .util import PhaseFailed, jround, parse_json, phase, run, say, start, stop

PEER = "nestjs-gateway"
READY_WAIT_S = 60.0


def run_if_asked(ctx) -> None:
    """bench.py's one call: the phase when enabled (config.wants_peer), else nothing."""
    if ctx.cfg.wants_peer(PEER, "peer_gateway"):
        phase(ctx.results, "peer_gateway", peer_gateway_phase, ctx)


def _peer_dir(ctx):
    return ctx.cfg.root / "bench" / "peers" / PEER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ticks(pid) -> int:
    """utime + stime of one process (all its threads), in clock ticks; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
        return int(rest[14 - 3]) + int(rest[15 - 3])
    except (OSError, IndexError, TypeError):
        return None


class _Peer:
    """The peer gateway as a child of the harness, with the C gateway's environment."""

    def __init__(self, ctx):
        self.ctx = ctx
        gw = ctx.stack.pid_of("gateway")
        if gw is None:
            raise PhaseFailed("the C gateway is not running")
        with open(f"/proc/{gw}/environ", "rb") as f:
            env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        self.port = _free_port()
        env[b"GATEWAY_ADDR"] = f"127.0.0.1:{self.port}".encode()
        env[b"NODE_ENV"] = b"production"
        self.env = {k.decode(): v.decode(errors="replace") for k, v in env.items()}
        self.env_file = ctx.work / "peer-gateway.env"
        self.env_file.write_bytes(b"".join(k + b"=" + v + b"\0" for k, v in env.items()))
        self.log = ctx.work / "peer-gateway.log"
        self.program = _peer_dir(ctx) / "run"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = start([self.program], stdout=log, stderr=log, env=self.env)
        deadline = time.monotonic() + READY_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PhaseFailed(f"the peer exited with {self.proc.returncode}: see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise PhaseFailed("the peer was not ready in time")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 10.0)
            self.proc = None


def _startup(ctx, peer) -> dict:
    """The peer's exec to first 200 on /readyz, cfg.startup_runs times (not running)."""
    runs = []
    for _ in range(ctx.cfg.startup_runs):
        report = ctx.load.startup(peer.url + "/readyz", peer.env_file, peer.log, peer.program)
        runs.append((report or {}).get("startup_ms"))
    ok = sorted(v for v in runs if v is not None)
    return {"runs": runs, "median": ok[len(ok) // 2] if ok else None}


def _c_startup(ctx) -> dict:
    """The C gateway's start-up: the footprint phase's figure when it ran, else its own."""
    have = ctx.results.get_path("footprint.startup_ms.gateway")
    return have if have else footprint.startup_one(ctx, "gateway")


def _measured(ctx, gw_pid, fn):
    """fn() under a stack CPU window and the gateway's own ticks: (report, loadgen s,
    gateway CPU s, stack CPU s without the other gateway)."""
    t0 = _ticks(gw_pid)
    with cpu.Window(ctx.stack.data) as w:
        report, loadgen_s = fn()
    t1 = _ticks(gw_pid)
    own = (t1 - t0) / cpu.HZ if t0 is not None and t1 is not None else None
    total, c_gw = w.seconds.get("total"), w.seconds.get("gateway")
    return report, loadgen_s, own, total, c_gw


def _per(units, seconds, scale):
    return jround(seconds * scale / units, 1) if seconds is not None and units else None


def _read_path(ctx, gws: dict, out: dict) -> None:
    """Saturation A-B-B-A, then the fixed rate A-B-B-A with CPU per request."""
    token, load, path = ctx.customers.first, ctx.load, f"/api/v1/products/{ctx.product}"
    # Warm-up, discarded, both sides alike: V8's JIT (and the C gateway's caches) warm,
    # as in a gateway that has been serving for a while.
    for side in ("c", "nestjs"):
        load.wrk(gws[side]["url"] + path, token)
    sat = {"c": [], "nestjs": []}
    for side in ("c", "nestjs", "nestjs", "c"):
        sat[side].append(load.wrk(gws[side]["url"] + path, token))
    for side in sat:
        out[side]["read_wrk"] = higher_rps(*sat[side])
    rates = [(out[s]["read_wrk"] or {}).get("rps") for s in sat]
    slower = min((r for r in rates if r), default=400)
    rate = max(int(slower) // 4, 50) // 10 * 10
    runs = {"c": [], "nestjs": []}
    for side in ("c", "nestjs", "nestjs", "c"):
        url = gws[side]["url"] + path
        fn = lambda: load.get(url, rate, ctx.cfg.t["fixed"], token)  # noqa: E731
        report, _, own, total, c_gw = _measured(ctx, gws[side]["pid"], fn)
        ok = (report or {}).get("ok")
        stack = total if side == "c" else (
            total - c_gw + own if None not in (total, c_gw, own) else None)
        runs[side].append((report, _per(ok, own, 1e6), _per(ok, stack, 1e6)))
    for side, rs in runs.items():
        best = lower_p50(*[r[0] for r in rs])
        first = rs[0]
        out[side]["read_fixed_rate"] = best
        out[side]["read_cpu_us_per_request"] = {"gateway": first[1], "stack": first[2]}
    out["read_rate_rps"] = rate


def _order_path(ctx, gws: dict, out: dict) -> None:
    """Orders at SAGA_COST_RATE through each gateway, A-B-B-A, CPU per order."""
    rate, secs = ctx.cfg.cost_rate, ctx.cfg.t["fixed"]
    work = ctx.stack.work
    runs = {"c": [], "nestjs": []}
    for side in ("c", "nestjs", "nestjs", "c"):
        url = gws[side]["url"]

        def fn(url=url):
            done = run([ctx.load.sagaload, "orders", url, rate, secs, "-c", 32,
                        "-d", ctx.cfg.t["drain"], "-t", work / "tokens", "-p", work / "products",
                        *ctx.load.kafka_args()])
            return parse_json(done.out), done.cpu_s

        report, _, own, total, c_gw = _measured(ctx, gws[side]["pid"], fn)
        n = (report or {}).get("accepted")
        stack = total if side == "c" else (
            total - c_gw + own if None not in (total, c_gw, own) else None)
        runs[side].append((report, _per(n, own, 1e3), _per(n, stack, 1e3)))
    for side, rs in runs.items():
        ok = [r for r in rs if r[0] and (r[0].get("http_ms") or {}).get("p50") is not None]
        best = min(ok, key=lambda r: r[0]["http_ms"]["p50"]) if ok else rs[0]
        out[side]["orders"] = best[0]
        out[side]["order_cpu_ms_per_order"] = {"gateway": rs[0][1], "stack": rs[0][2]}
    out["order_rate_rps"] = rate


def _ratio(a, b):
    return jround(a / b, 3) if a is not None and b else None


def peer_gateway_phase(ctx) -> None:
    """Builds and starts the peer next to the C gateway, measures both, records keys."""
    if run([_peer_dir(ctx) / "build.sh"]).rc != 0:
        raise PhaseFailed("bench/peers/nestjs-gateway/build.sh failed")
    ctx.customers.fresh()
    peer = _Peer(ctx)
    out = {"c": {}, "nestjs": {}}
    out["nestjs"]["startup_ms"] = _startup(ctx, peer)
    out["c"]["startup_ms"] = _c_startup(ctx)
    gw_pid = ctx.stack.pid_of("gateway")
    peer.start()
    try:
        time.sleep(1.0)
        gws = {"c": {"url": ctx.gateway_url, "pid": gw_pid},
               "nestjs": {"url": peer.url, "pid": peer.proc.pid}}
        for side in gws:
            out[side]["rss_at_rest_mib"] = footprint.rss_mib(gws[side]["pid"])
        with footprint.PeakRss({s: gws[s]["pid"] for s in gws}) as peak:
            _read_path(ctx, gws, out)
            _order_path(ctx, gws, out)
        for side in gws:
            out[side]["rss_under_load_mib"] = peak.mib(side)
    finally:
        peer.stop()
    put, r = ctx.results.put, ctx.results
    put("peers.nestjs_gateway", out["nestjs"])
    put("peers.c_gateway", out["c"])
    put("peers.read_rate_rps", out.get("read_rate_rps"))
    put("peers.order_rate_rps", out.get("order_rate_rps"))
    g = r.get_path
    c, n = "peers.c_gateway.", "peers.nestjs_gateway."
    ratios = {
        # Higher is better for the C gateway in each: how many times the peer's figure.
        "c_vs_nestjs_read_rps": _ratio(g(c + "read_wrk.rps"), g(n + "read_wrk.rps")),
        "c_vs_nestjs_read_p50": _ratio(g(n + "read_fixed_rate.latency_us.p50"),
                                       g(c + "read_fixed_rate.latency_us.p50")),
        "c_vs_nestjs_read_p99": _ratio(g(n + "read_fixed_rate.latency_us.p99"),
                                       g(c + "read_fixed_rate.latency_us.p99")),
        "c_vs_nestjs_read_cpu_per_request": _ratio(g(n + "read_cpu_us_per_request.gateway"),
                                                   g(c + "read_cpu_us_per_request.gateway")),
        "c_vs_nestjs_order_p50": _ratio(g(n + "orders.http_ms.p50"), g(c + "orders.http_ms.p50")),
        "c_vs_nestjs_order_p99": _ratio(g(n + "orders.http_ms.p99"), g(c + "orders.http_ms.p99")),
        "c_vs_nestjs_order_cpu_per_order": _ratio(g(n + "order_cpu_ms_per_order.gateway"),
                                                  g(c + "order_cpu_ms_per_order.gateway")),
        "c_vs_nestjs_rss_at_rest": _ratio(g(n + "rss_at_rest_mib"), g(c + "rss_at_rest_mib")),
        "c_vs_nestjs_rss_under_load": _ratio(g(n + "rss_under_load_mib"),
                                             g(c + "rss_under_load_mib")),
        "c_vs_nestjs_startup": _ratio(g(n + "startup_ms.median"), g(c + "startup_ms.median")),
    }
    for k, v in ratios.items():
        put(("ratios", k), v)
    say("peer gateway: " + ", ".join(f"{k}={v}" for k, v in ratios.items()))
