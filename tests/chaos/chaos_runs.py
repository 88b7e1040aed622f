#!/usr/bin/env python3
"""The table of a `make chaos RUNS=N` series, from its numbered summaries.

  chaos_runs.py DATA_DIR N   reads DATA_DIR/chaos-summary-<1..N>.json, prints one row
                             per run and the TIMEOUT share per fault kind of each
"""

import json
import os
import sys


def main(data, n):
    rows, kinds = [], []
    for run in range(1, n + 1):
        path = os.path.join(data, f"chaos-summary-{run}.json")
        try:
            with open(path) as f:
                rows.append((run, json.load(f)))
        except (OSError, ValueError) as e:
            rows.append((run, {"error": str(e)}))
            continue
        for k in rows[-1][1].get("timeouts_by_fault_kind", {}):
            if k not in kinds:
                kinds.append(k)
    print(f"== chaos: {n} runs ==")
    print(f"{'run':>3}  {'result':<6} {'seed':>10} {'orders':>6} {'invariants':>10} "
          f"{'TIMEOUT':>7} {'by a fault':>10} {'orders/s':>8} {'flowing':>8} {'best 10s':>8}")
    for run, r in rows:
        if "error" in r:
            print(f"{run:>3}  no summary ({r['error']})")
            continue
        inv = r["invariants"]
        n_orders = sum(r["outcomes"].values())
        by = r.get("timeouts_by_fault_kind", {})
        total = r["outcomes"].get("CANCELLED TIMEOUT", 0)
        fault = sum(v["timeouts"] for k, v in by.items() if k != "none")
        rate = r.get("load_rate_orders_per_s", {})
        print(f"{run:>3}  {'PASS' if r['passed'] else 'FAIL':<6} {r['config']['seed']:>10} "
              f"{n_orders:>6} {sum(i['passed'] for i in inv):>4}/{len(inv):<5} "
              f"{100.0 * total / max(1, n_orders):>6.2f}% {100.0 * fault / max(1, n_orders):>9.2f}% "
              f"{rate.get('mean') or 0:>8} {rate.get('flowing') or 0:>8} {rate.get('best_10s') or 0:>8}")
    print("orders cancelled TIMEOUT by the fault kind near them, % of the run's orders "
          "(faults of the kind):")
    print("  " + " ".join(f"{k:>16}" for k in kinds))
    for run, r in rows:
        by = r.get("timeouts_by_fault_kind", {})
        cells = [f"{by[k]['share_pct']:.2f}% ({by[k]['faults']})" if k in by else "-" for k in kinds]
        print(f"{run:>2} " + " ".join(f"{c:>16}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
