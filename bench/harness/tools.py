"""The load tools: wrk, ghz, bench_sagaload, and what their reports become in JSON.

Each wrapper returns the parsed report (None when the tool produced nothing usable) and,
for the open-loop runs whose cost is reported, the CPU seconds the tool itself spent
(the `loadgen` column: measured from its rusage, never part of the stack's total).
"""

import json
import os
import re
import shutil
from pathlib import Path

from .config import CONNS, WRK_THREADS
from .util import HarnessError, jround, parse_json, run, say

GO = Path("/usr/local/go/bin/go")
GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@latest"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def check(cfg) -> str:
    """Dies when a tool the run cannot do without is missing; returns ghz's path, or
    None (then the direct gRPC figures are null). ghz is installed once with `go
    install` into the cache when Go is there."""
    for tool in ("wrk", "pgbench", "psql"):
        if shutil.which(tool) is None:
            raise HarnessError(f"{tool} is missing (make deps)")
    for tool in ("bench_hello", "bench_sagaload"):
        if not os.access(cfg.tools_dir / tool, os.X_OK):
            raise HarnessError(f"{cfg.tools_dir / tool} is missing (make release)")
    ghz = Path(shutil.which("ghz") or cfg.go_bin / "ghz")
    if not os.access(ghz, os.X_OK) and os.access(GO, os.X_OK):
        say(f"installing ghz into {cfg.go_bin} (go install, once)")
        if run([GO, "install", GHZ_MODULE], stdout=2, env=dict(os.environ, GOBIN=str(cfg.go_bin))).rc:
            say("ghz could not be installed: the direct gRPC figures will be null")
    return str(ghz) if os.access(ghz, os.X_OK) else None


def _us(text: str) -> float:
    """wrk's duration ("850.00us", "1.16ms", "1.02s") in microseconds."""
    m = re.match(r"([0-9.]+)(us|ms|s|m)?$", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7, None: 1}[m.group(2)]


def wrk_report(text: str):
    """wrk's report (run with --latency) as JSON; latencies in us; None without req/s."""
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if not rps:
        return None
    lat = {p: jround(_us(v), 3) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M)}
    req = re.search(r"^\s*(\d+) requests in ", text, re.M)
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", text))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    bad += sum(int(n) for n in sock.groups()) if sock else 0
    return {"rps": float(rps.group(1)), "requests": int(req.group(1)) if req else 0, "errors": bad,
            "closed_loop_latency_us": {f"p{p}": lat.get(p) for p in ("50", "90", "99")}}


def ghz_report(text: str):
    """ghz's JSON report reduced to ours; latencies in us."""
    r = parse_json(text)
    if not isinstance(r, dict):
        return None
    codes = r.get("statusCodeDistribution") or {}
    dist = {f"p{d['percentage']}": d["latency"] / 1000 for d in r.get("latencyDistribution") or []}
    return {"rps": r.get("rps"), "requests": r.get("count"),
            "errors": sum(v for k, v in codes.items() if k != "OK"),
            "latency_us": {p: dist.get(p) for p in ("p50", "p90", "p99")}}


class Load:
    """Runs the load tools against the bench stack with the common settings."""

    def __init__(self, cfg, ghz, stack):
        self.cfg = cfg
        self.ghz_path = ghz
        self.stack = stack
        self.sagaload = cfg.tools_dir / "bench_sagaload"

    def wrk(self, url: str, token=None):
        """Saturation with the common settings; with a token, wrk-auth.lua sends it."""
        args = ["wrk", "-t", WRK_THREADS, "-c", CONNS, "-d", f"{self.cfg.t['load']}s", "--latency"]
        env = None
        if token:
            args += ["-s", self.cfg.here / "wrk-auth.lua"]
            env = dict(os.environ, BENCH_TOKEN=token)
        return wrk_report(run(args + [url], env=env).out)

    def ghz(self, product: str, user_id, *extra):
        """GetProduct on product-svc-1 over one connection, as the gateway holds one
        channel per service, with the metadata the gateway sends, and its certificate."""
        if not self.ghz_path:
            return None
        meta = {"x-request-id": "bench", "x-user-id": user_id or "", "x-user-role": "customer",
                "traceparent": TRACEPARENT}
        env = self.stack.env
        if env.get("GATEWAY_TLS_CERT_FILE"):  # mutual TLS, as the gateway (docs/trust.md)
            tls = ["--cacert", env["TLS_CA_FILE"], "--cert", env["GATEWAY_TLS_CERT_FILE"],
                   "--key", env["GATEWAY_TLS_KEY_FILE"]]
        else:
            tls = ["--insecure"]
        args = [self.ghz_path, *tls, "--import-paths", self.cfg.root / "proto",
                "--proto", "shop/product/v1/product_service.proto",
                "--call", "shop.product.v1.ProductService.GetProduct",
                "-d", json.dumps({"product_id": product}), "-m", json.dumps(meta),
                "--connections", "1", "-c", CONNS, "-O", "json", *extra,
                self.stack.first_addr("product", "GRPC")]
        return ghz_report(run(args).out)

    def get(self, url: str, rate: float, seconds: float, token=None):
        """Open-loop GETs at a fixed rate: (report, the generator's CPU seconds)."""
        args = [self.sagaload, "get", url, rate, seconds, "-c", CONNS]
        if token:
            args += ["-H", f"Authorization: Bearer {token}"]
        done = run(args)
        return parse_json(done.out), done.cpu_s

    def orders(self, rate: float, seconds: float):
        """One open-loop run of orders watched to CONFIRMED on order.events:
        (report, the generator's CPU seconds)."""
        work = self.stack.work
        done = run([self.sagaload, "orders", self.stack.env["GATEWAY_URL"], rate, seconds,
                    "-c", CONNS, "-d", self.cfg.t["drain"], "-t", work / "tokens",
                    "-p", work / "products", *self.kafka_args()])
        return parse_json(done.out), done.cpu_s

    def kafka_args(self) -> list:
        """The orders consumer's broker and its login (the stack's admin, over TLS)."""
        config = self.stack.env.get("KAFKA_ADMIN_KCAT_CONFIG")
        return ["-b", self.stack.env["KAFKA_BROKERS"]] + (["-F", config] if config else [])

    def startup(self, url: str, env_file, log_file, program: str):
        """bench_sagaload startup: fork, exec, poll /readyz every 2 ms, stop."""
        return parse_json(run([self.sagaload, "startup", url, env_file, log_file, program]).out)
