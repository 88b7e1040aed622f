"""BENCH_PGSS=1: where PostgreSQL's time goes per order, statement by statement.

With it, the bench stack's clusters are created with pg_stat_statements loaded (and
planning tracked), and the fixed-rate cost run reports, per database, the statements
that took most server time: calls, plans (a prepared statement planned again for every
call shows here) and mean plan and execution time, and each one's server time per
confirmed order. The extension costs some CPU itself, so it is off by default: it is a
diagnostic for the analysis in bench/README.md, not a figure to compare.
"""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from .cpu import SERVICES
from .util import psql, say

EXTRA_CONF = ("shared_preload_libraries = 'pg_stat_statements'\n"
              "pg_stat_statements.track_planning = on\n"
              "pg_stat_statements.max = 1000")
TOP = 12


def enabled() -> bool:
    return os.environ.get("BENCH_PGSS", "0") not in ("", "0")


def export() -> None:
    """Before the stack starts: new clusters load the extension."""
    os.environ["PG_EXTRA_CONF"] = EXTRA_CONF


def _superuser_url(ctx, svc: str) -> str:
    """The cluster's superuser on the service's database (stack.sh keeps its password)."""
    password = (Path(ctx.stack.data) / "secrets" / "pg-superuser").read_text().strip()
    u = urlsplit(ctx.stack.url(svc))
    query = f"?{u.query}" if u.query else ""  # sslmode=verify-full&sslrootcert=...
    return f"postgresql://postgres:{password}@{u.hostname}:{u.port}{u.path}{query}"


def reset(ctx) -> None:
    """The extension in every service database (once), its counters at zero."""
    for svc in SERVICES:
        url = _superuser_url(ctx, svc)
        psql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements", quiet=True)
        if psql(url, "SELECT pg_stat_statements_reset()", quiet=True) is None:
            say(f"pg_stat_statements: not available on {svc}'s database")


def _shorten(query: str) -> str:
    return re.sub(r"\s+", " ", query)[:160]


def collect(ctx, orders) -> dict:
    """Per database, the TOP statements by server time since reset(), per order."""
    out = {}
    for svc in SERVICES:
        rows = psql(_superuser_url(ctx, svc),
                    "SELECT calls, plans, total_plan_time, total_exec_time, query"
                    " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                    " ORDER BY total_plan_time + total_exec_time DESC LIMIT %d" % TOP,
                    sep="\x1f", quiet=True)
        out[svc] = [_row(line.split("\x1f", 4), orders) for line in (rows or "").splitlines()
                    if line.count("\x1f") >= 4]
    return out


def _row(f, orders) -> dict:
    calls, plans, plan_ms, exec_ms = int(f[0]), int(f[1]), float(f[2]), float(f[3])
    return {"query": _shorten(f[4]),
            "calls_per_order": round(calls / orders, 2) if orders else None,
            "plans_per_order": round(plans / orders, 2) if orders else None,
            "plan_us_mean": round(plan_ms * 1000 / plans, 1) if plans else 0,
            "exec_us_mean": round(exec_ms * 1000 / calls, 1) if calls else 0,
            "server_us_per_order": round((plan_ms + exec_ms) * 1000 / orders, 1) if orders else None}
