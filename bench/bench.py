#!/usr/bin/env python3
"""`make bench`: docs/architecture.md §8 measured side by side in one run.

Starts its own stack (STACK_PROFILE=bench: wiped, release build, SCALE=1), seeds it
through the REST API, then measures each figure next to its baseline: the HTTP floor and
the gateway's read path, latency at a fixed rate, the saga's throughput, latency and CPU
per order, pgbench baselines, CPU per unit of work per process group, footprint and
start-up. Prints a table and writes bench/results.json; bench/README.md explains each
method.

  BENCH_QUICK=1      every phase lasts a couple of seconds (make test: it runs)
  BENCH_OUT=FILE     where the JSON goes (default bench/results.json)
  BIN_DIR            the programs (default build-release/); the tools are taken from
                     $BIN_DIR/bench unless BENCH_TOOLS_DIR says otherwise
  SAGA_COST_RATE     orders/s of the fixed-rate CPU cost run (default 40)
  BENCH_PGSS=1       pg_stat_statements in the clusters: the fixed-rate cost run also
                     reports the statements that took most server time, per order
  BENCH_ONLY=saga    only these phase groups (read, saga, cost, trace, security, baseline, startup;
                     comma-separated): a shorter run for experiments, whose JSON lacks
                     keys; `cost` is the fixed-rate CPU cost alone (bench/compare.py);
                     peer_gateway, peer_order: one peer's phase alone
  BENCH_PEERS=none   which peers of bench/peers to compare with (comma list of
                     nestjs-gateway, go-order-svc; default all in a full run, none
                     with BENCH_QUICK)

  bench.py --check-keys FILE   exit 1 unless FILE has every documented key

A benchmark never fails: exit 0 with whatever was measured (null where a figure could
not be); exit 1 only when the harness itself cannot run (no stack, no tools).
"""

import argparse
import os
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in bench/ by a run
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cpu, footprint, keys, machine, phases_read, phases_saga, pgbench, targets  # noqa: E402
from harness import phases_peer_gateway, phases_security, phases_trace  # noqa: E402
from harness.phases_peer_order import peer_order_phase  # noqa: E402
from harness.config import Config  # noqa: E402
from harness.context import Ctx  # noqa: E402
from harness.report import table  # noqa: E402
from harness.seed import Api, ApiError, Customers, seed  # noqa: E402
from harness.stack import Stack  # noqa: E402
from harness.tools import Load, check  # noqa: E402
from harness.util import HarnessError, Results, kill_all, phase, say  # noqa: E402

DEFAULT_HTTP_THREADS = 4  # the gateway's default (gateway/README.md)


def _http_threads(stack) -> int:
    """HTTP_THREADS of the running gateway (bench_hello copies its threading)."""
    try:
        with open(f"/proc/{stack.pid_of('gateway')}/environ", "rb") as f:
            for var in f.read().split(b"\0"):
                if var.startswith(b"HTTP_THREADS="):
                    return int(var.split(b"=", 1)[1])
    except (OSError, ValueError):
        pass
    return DEFAULT_HTTP_THREADS


def prepare(ctx) -> None:
    """Tools, stack, seeding: what every phase needs. A failure here is the harness's."""
    ctx.load = Load(ctx.cfg, check(ctx.cfg), ctx.stack)
    ctx.stack.up()
    ctx.http_threads = _http_threads(ctx.stack)
    ctx.api = Api(ctx.gateway_url + "/api/v1")
    ctx.customers = Customers(ctx.api, ctx.work)
    ctx.products = seed(ctx.stack, ctx.api, ctx.customers, ctx.work)
    try:
        ctx.user_id = (ctx.api.call("GET", "/users/me", ctx.customers.first) or {})["user"]["id"]
    except (ApiError, KeyError, TypeError) as e:
        say(f"GET /users/me: {e} (ghz sends no user id)")


def measure_load(ctx) -> None:
    """Phases 2-5, with every program's RSS sampled each second all along."""
    put = ctx.results.put
    ctx.sampler = footprint.Sampler(ctx).start()
    if ctx.cfg.wants("read"):
        phase(ctx.results, "saturation", phases_read.saturation, ctx)
        phase(ctx.results, "grpc_direct", phases_read.grpc_direct, ctx)
        ctx.rate_fixed = phases_read.fixed_rate(ctx)
        phase(ctx.results, "http_floor_fixed_rate", phases_read.http_floor_fixed, ctx)
        phase(ctx.results, "latency_fixed_rate", phases_read.latency_fixed, ctx)
    if ctx.cfg.wants("saga"):
        phase(ctx.results, "saga_steps", phases_saga.saga_steps, ctx)
        phase(ctx.results, "saga_half_peak", phases_saga.saga_half, ctx)
    if ctx.cfg.wants("saga") or ctx.cfg.wants("cost"):
        # After the steps: the broker's JIT is warm by then, as in a running fleet (cold,
        # the first 20 s of orders cost it three times as much). Alone (BENCH_ONLY=cost,
        # what bench/compare.py runs), a run at the same rate warms it first.
        if not ctx.cfg.wants("saga"):
            phase(ctx.results, "saga_warmup", phases_saga.warmup, ctx)
        phase(ctx.results, "saga_fixed_rate_cost", phases_saga.fixed_rate_cost, ctx)
    ctx.sampler.stop()
    put("footprint.under_load_mib", ctx.sampler.under_load())
    put("footprint.peak_mib", footprint.rss_now(ctx, "VmHWM"))
    put("footprint.smaps_at_end_mib", footprint.smaps(ctx))


def idle_cpu(ctx) -> None:
    """The stack's CPU with nothing to do, once the load is over and drained: the steady
    cost of being up (right after start-up the JVM's compilers would still be busy)."""
    ctx.results.put("idle_cpu_pct", cpu.idle_pct(ctx.stack.data, ctx.cfg.t["idle"]))


def run_all(ctx, load_at_start: str) -> None:
    """Every phase in order, then the report."""
    t0 = time.monotonic()
    prepare(ctx)
    ctx.results.put("footprint.at_rest_mib", footprint.rss_now(ctx, "VmRSS"))
    measure_load(ctx)
    phases_peer_gateway.run_if_asked(ctx)  # the NestJS gateway peer (issue 17)
    if ctx.cfg.wants("trace"):  # what tracing costs, sampling on vs off (issue 19)
        phase(ctx.results, "trace_cost", phases_trace.trace_cost, ctx)
    if ctx.cfg.wants("security"):  # what transport security costs, on vs off (issue 20)
        phase(ctx.results, "security_cost", phases_security.security_cost, ctx)
    phase(ctx.results, "idle_cpu", idle_cpu, ctx)
    if ctx.cfg.wants("baseline"):
        phase(ctx.results, "saga_baseline", pgbench.saga_baseline, ctx)
        phase(ctx.results, "pgbench_tpcb", pgbench.yardstick, ctx)
    if ctx.cfg.wants("startup"):
        phase(ctx.results, "startup", footprint.startup, ctx)
    if ctx.cfg.wants_peer("go-order-svc", "peer_order"):  # the Go order-svc peer (issue 17)
        phase(ctx.results, "peer_order", peer_order_phase, ctx)
    r = ctx.results
    r["machine"] = {**machine.machine(load_at_start), **(r.get("machine") or {})}
    r["versions"] = machine.versions(ctx, ctx.load.ghz_path)
    machine.settings(ctx)
    r.put("settings.phase_seconds.total", int(time.monotonic() - t0))
    targets.finish(r)
    ctx.cfg.out.parent.mkdir(parents=True, exist_ok=True)
    ctx.cfg.out.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(r))
    print()
    say(f"results: {ctx.cfg.out}")


def _on_term(signum, frame):
    """SIGTERM ends the run like Ctrl-C: through the finally that stops the stack."""
    raise KeyboardInterrupt


def cleanup(ctx, stack_started: bool) -> None:
    """Stops the sampler, bench_hello and every child, the stack, removes the temp dir;
    interrupts are ignored meanwhile so that a second Ctrl-C cannot cut it short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if ctx.sampler is not None:
        ctx.sampler.stop()
    phases_read.stop_hello(ctx)
    kill_all()
    if stack_started:
        ctx.stack.down()
    shutil.rmtree(ctx.work, ignore_errors=True)


def bench() -> int:
    """One run: 0 with whatever was measured, 1 when the harness cannot run, 130 when
    interrupted."""
    cfg = Config.from_env()
    cfg.export()
    load_at_start = machine.loadavg()
    work = Path(tempfile.mkdtemp(prefix="bench."))
    ctx = Ctx(cfg=cfg, work=work, results=Results(), stack=Stack(cfg.root, work))
    signal.signal(signal.SIGTERM, _on_term)
    try:
        run_all(ctx, load_at_start)
        return 0
    except HarnessError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        cleanup(ctx, ctx.stack.programs_from is not None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-keys", metavar="FILE",
                        help="exit 1 unless FILE has every key bench/README.md documents")
    args = parser.parse_args(argv)
    if args.check_keys:
        return keys.check(args.check_keys)
    if os.environ.get("HA", "0") not in ("", "0"):
        # Its CPU groups and the security comparison (a plaintext listener, a one-host
        # URL) are those of one node per part: on the HA topology they would leave out
        # the extra nodes, keepers and Sentinels, and price less than what runs.
        print("bench: make bench measures the single-node stack; HA=1 is not supported "
              "(docs/ha.md, \"Not covered\")", file=sys.stderr)
        return 2
    return bench()


if __name__ == "__main__":
    sys.exit(main())
