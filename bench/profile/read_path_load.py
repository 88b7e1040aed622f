"""Issue 16's read-path profile: load plus per-process CPU, optionally under perf.

    python3 bench/profile/read_path_load.py OUT_DIR RATE SECONDS [perf]

Needs a running bench stack (STACK_PROFILE=bench) seeded by read_path_seed.py into OUT_DIR
(products, tokens). Runs bench_sagaload get on GET /api/v1/products/{id} with the first
customer's token at RATE for SECONDS; prints the run's report and the stack's CPU per OK
request per group (bench/harness/cpu.py's Window, as make bench computes it). With "perf",
records `perf record -F 499 --call-graph dwarf,16384` on the gateway, product-svc-1, the
product cluster's backends and Redis during the same window into OUT_DIR/perf-<group>.data.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from harness import cpu  # noqa: E402
from harness.stack import parse_env  # noqa: E402

out, rate, secs, withperf = Path(sys.argv[1]), sys.argv[2], sys.argv[3], len(sys.argv) > 4
env = parse_env(subprocess.run([ROOT / "deploy/local/stack.sh", "env"], capture_output=True,
                               text=True).stdout)
data = Path(env["STACK_DATA"])
prod = (out / "products").read_text().split()[0]
tok = (out / "tokens").read_text().split()[0]
pid = lambda f: (data / f).read_text().split()[0]  # noqa: E731
backends = subprocess.run(["pgrep", "-P", pid("pg/product/postmaster.pid"), "-f", "postgres: product product"],
                          capture_output=True, text=True).stdout.split()
targets = {"gateway": [pid("run/gateway.pid")], "product_svc": [pid("run/product-svc-1.pid")],
           "pg_product": backends, "redis": [pid("run/redis.pid")]}
perfs = []
if withperf:
    for name, pids in targets.items():
        if pids:
            perfs.append(subprocess.Popen(
                ["perf", "record", "-F", "499", "--call-graph", "dwarf,16384",
                 "-o", str(out / f"perf-{name}.data"), "-p", ",".join(pids)],
                stdout=subprocess.DEVNULL, stderr=open(out / f"perf-{name}.log", "w")))
    time.sleep(1)
tools = Path(os.environ.get("BIN_DIR") or ROOT / "build-release") / "bench"
with cpu.Window(data) as w:
    r = subprocess.run([tools / "bench_sagaload", "get", f"{env['GATEWAY_URL']}/api/v1/products/{prod}",
                        rate, secs, "-c", "32", "-H", f"Authorization: Bearer {tok}"],
                       capture_output=True, text=True)
for p in perfs:
    p.send_signal(2)
for p in perfs:
    p.wait()
rep = json.loads(r.stdout)
print(json.dumps({k: rep[k] for k in ("offered_rps", "achieved_rps", "ok", "errors", "latency_us")}))
print(json.dumps(w.per_unit(rep["ok"], 1e6, 0, 1)))
