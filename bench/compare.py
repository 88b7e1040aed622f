#!/usr/bin/env python3
"""Two builds of the fleet side by side: CPU per confirmed order, per process group.

  python3 bench/compare.py A B [--rate 40] [--label-a old --label-b new]

A and B are build directories (like build-release/) or git commits, which are built
once into ~/.cache/shop-fleet/builds/<commit> from a detached worktree. Each build runs
`BENCH_ONLY=cost bench/bench.py` (its own stack, seeded, a warm-up, then 20 s of orders
at the rate inside a CPU window) twice, in A-B-B-A order, so that a burst elsewhere on a
shared machine lands on one run of each rather than deciding the comparison. Prints
each group's mean over its two runs, the ratio B/A, and the end-to-end latency.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = Path(os.environ.get("SHOP_CACHE") or Path.home() / ".cache" / "shop-fleet") / "builds"
GROUPS = ("total", "kafka", "pg_order", "pg_product", "pg_user", "order_svc", "product_svc",
          "user_svc", "gateway", "redis", "loadgen")
TARGETS = ("order-svc", "product-svc", "user-svc", "gateway", "bench_hello", "bench_sagaload")


def git(*args) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def build(ref: str) -> Path:
    """A build directory: `ref` itself if it is one, else the commit built once."""
    if Path(ref).is_dir():
        return Path(ref).resolve()
    commit = git("rev-parse", "--short", ref)
    out = CACHE / commit
    if (out / "gateway" / "gateway").exists():
        return out
    src = CACHE / f"src-{commit}"
    if not src.exists():
        git("worktree", "add", "--detach", str(src), commit)
    print(f"[compare] building {commit} into {out}", file=sys.stderr)
    subprocess.run(["cmake", "-S", src, "-B", out, "-G", "Ninja",
                    "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DSHOP_SANITIZE=OFF"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", out, "--target", *TARGETS], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def run(bin_dir: Path, rate: float) -> dict:
    """One cost run of the build; its saga.fixed_rate_cost (empty if it failed)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        env = dict(os.environ, BENCH_ONLY="cost", BIN_DIR=str(bin_dir), BENCH_OUT=f.name,
                   SAGA_COST_RATE=str(rate), BENCH_TOOLS_DIR=str(bin_dir / "bench"))
        done = subprocess.run([sys.executable, HERE / "bench.py"], env=env, check=False,
                              capture_output=True, text=True)
        try:
            return json.loads(Path(f.name).read_text())["saga"]["fixed_rate_cost"] or {}
        except (OSError, ValueError, KeyError, TypeError):
            print(f"[compare] the run of {bin_dir} failed:\n{done.stderr[-3000:]}",
                  file=sys.stderr)
            return {}


def mean(runs: list, key) -> float:
    vals = [key(r) for r in runs]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def report(a: list, b: list, la: str, lb: str) -> None:
    print(f"{'ms per order':<14}{la:>12}{lb:>12}{'B/A':>8}")
    for g in GROUPS:
        va = mean(a, lambda r: (r.get("cpu_ms_per_order") or {}).get(g))
        vb = mean(b, lambda r: (r.get("cpu_ms_per_order") or {}).get(g))
        ratio = f"{vb / va:.2f}" if va and vb is not None else "n/a"
        print(f"{g:<14}{fmt(va):>12}{fmt(vb):>12}{ratio:>8}")
    for p in ("p50", "p99"):
        va = mean(a, lambda r: (r.get("e2e_ms") or {}).get(p))
        vb = mean(b, lambda r: (r.get("e2e_ms") or {}).get(p))
        print(f"{'e2e ' + p + ' ms':<14}{fmt(va):>12}{fmt(vb):>12}")
    print(f"runs (A-B-B-A), total ms/order: "
          f"{[fmt((r.get('cpu_ms_per_order') or {}).get('total')) for r in (a[0], b[0], b[1], a[1])]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rate", type=float, default=40)
    ap.add_argument("--label-a", default="A")
    ap.add_argument("--label-b", default="B")
    args = ap.parse_args()
    da, db = build(args.a), build(args.b)
    ra1 = run(da, args.rate)
    rb1 = run(db, args.rate)
    rb2 = run(db, args.rate)
    ra2 = run(da, args.rate)
    print(f"A = {args.a} ({da}), B = {args.b} ({db}), {args.rate:g} orders/s, 20 s each")
    report([ra1, ra2], [rb1, rb2], args.label_a, args.label_b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
