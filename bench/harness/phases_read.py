"""Phases 1-3: the HTTP floor, the gateway's read path, and latency at a fixed rate.

Two runs that are compared never run just one after the other: on a shared machine a
burst of someone else's build would land on one of them and decide the ratio. They run
twice in A-B-B-A order and each keeps its better run.
"""

import os
import subprocess
import time
import urllib.request

from . import cpu
from .breakdown import breakdown_read, metrics_snap
from .util import PhaseFailed, jround, start, stop

HELLO_WAIT_S = 5.0


def _better(runs: list, key, pick):
    """Of several reports, the one pick() prefers by key; reports without it ignored."""
    ok = [r for r in runs if r is not None and key(r) is not None]
    return pick(ok, key=key) if ok else None


def higher_rps(*runs):
    """The run with the higher throughput (saturation: the less disturbed one)."""
    return _better(list(runs), lambda r: r.get("rps"), max)


def lower_p50(*runs):
    """The run with the lower p50 (fixed rate: the one no burst elsewhere hit)."""
    return _better(list(runs), lambda r: (r.get("latency_us") or {}).get("p50"), min)


def read_url(ctx) -> str:
    """GET /api/v1/products/{id}: JWT, session and budget in Redis, gRPC, one query."""
    return f"{ctx.gateway_url}/api/v1/products/{ctx.product}"


def start_hello(ctx) -> None:
    """bench_hello on an ephemeral port with the gateway's HTTP_THREADS; it prints
    "serving <port>" once it listens."""
    log = ctx.work / "hello.out"
    with open(log, "w") as f:
        env = dict(os.environ, HELLO_ADDR="127.0.0.1:0", HTTP_THREADS=str(ctx.http_threads))
        ctx.hello_proc = start([ctx.cfg.tools_dir / "bench_hello"], stdout=f,
                               stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + HELLO_WAIT_S
    while time.monotonic() < deadline:
        words = log.read_text().split()
        if "serving" in words and words.index("serving") + 1 < len(words):
            ctx.hello_url = f"http://127.0.0.1:{words[words.index('serving') + 1]}/"
            return
        time.sleep(0.1)
    raise PhaseFailed("bench_hello did not start")


def stop_hello(ctx) -> None:
    """Stops bench_hello (also called on the exit path)."""
    if ctx.hello_proc is not None:
        stop(ctx.hello_proc)
        ctx.hello_proc = None


def _check_read(ctx) -> None:
    """One authenticated read first: a saturation run of 401s would measure nothing."""
    req = urllib.request.Request(read_url(ctx),
                                 headers={"Authorization": f"Bearer {ctx.customers.first}"})
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except OSError as e:
        raise PhaseFailed(f"GET {read_url(ctx)}: {e}") from e


def saturation(ctx) -> None:
    """wrk on hello, gateway, gateway, hello; each keeps its higher req/s."""
    start_hello(ctx)
    _check_read(ctx)
    token, load = ctx.customers.first, ctx.load
    h1 = load.wrk(ctx.hello_url)
    g1 = load.wrk(read_url(ctx), token)
    g2 = load.wrk(read_url(ctx), token)
    h2 = load.wrk(ctx.hello_url)
    ctx.results.put("http_floor.wrk", higher_rps(h1, h2))
    ctx.results.put("gateway_read.wrk", higher_rps(g1, g2))


def grpc_direct(ctx) -> None:
    """GetProduct straight to product-svc, saturated, for as long as wrk ran."""
    ctx.results.put("gateway_read.grpc_direct_ghz",
                    ctx.load.ghz(ctx.product, ctx.user_id, "-z", f"{ctx.cfg.t['load']}s"))


def fixed_rate(ctx) -> int:
    """The latency comparison runs at a quarter of the gateway's saturated throughput
    (at least 50 req/s, a multiple of 10; 100 when saturation gave nothing)."""
    rps = ctx.results.get_path("gateway_read.wrk.rps")
    quarter = (round(rps) if rps is not None else 400) // 4
    return max(quarter, 50) // 10 * 10


def http_floor_fixed(ctx) -> None:
    """The load generator's own floor at the latency-comparison rate, on hello."""
    try:
        if ctx.hello_url is None:
            raise PhaseFailed("bench_hello is not running")
        report, _ = ctx.load.get(ctx.hello_url, ctx.rate_fixed, ctx.cfg.t["fixed"])
        ctx.results.put("http_floor.fixed_rate", report)
    finally:
        stop_hello(ctx)


def _gateway_fixed(ctx):
    """bench_sagaload get on the gateway with a customer's token."""
    return ctx.load.get(read_url(ctx), ctx.rate_fixed, ctx.cfg.t["fixed"], ctx.customers.first)


def latency_fixed(ctx) -> None:
    """Gateway, direct, direct, gateway at the fixed rate; each keeps its run with the
    lower p50. The first gateway run also gives the histogram breakdown and the CPU per
    request (the stack's windowed CPU over its OK requests)."""
    load, t = ctx.load, ctx.cfg.t["fixed"]
    m0 = metrics_snap(ctx)
    with cpu.Window(ctx.stack.data) as window:
        g1, loadgen_s = _gateway_fixed(ctx)
    m1 = metrics_snap(ctx)
    ctx.results.put("gateway_read.breakdown_mean_us", breakdown_read(m0, m1))
    ok = (g1 or {}).get("ok")
    ctx.results.put("gateway_read.cpu_us_per_request", window.per_unit(ok, 1e6, loadgen_s, 1))
    d1 = load.ghz(ctx.product, ctx.user_id, "--rps", str(ctx.rate_fixed), "-z", f"{t}s")
    d2 = load.ghz(ctx.product, ctx.user_id, "--rps", str(ctx.rate_fixed), "-z", f"{t}s")
    g2, _ = _gateway_fixed(ctx)
    ctx.results.put("gateway_read.fixed_rate", lower_p50(g1, g2))
    ctx.results.put("gateway_read.grpc_direct_fixed_rate", lower_p50(d1, d2))


def added_latency(results) -> dict:
    """The gateway's added p50 / p99: gateway minus direct gRPC at the same fixed rate."""
    def d(q):
        g = results.get_path(("gateway_read", "fixed_rate", "latency_us", q))
        r = results.get_path(("gateway_read", "grpc_direct_fixed_rate", "latency_us", q))
        return jround(g - r, 1) if g is not None and r is not None else None
    return {"p50": d("p50"), "p99": d("p99")}

