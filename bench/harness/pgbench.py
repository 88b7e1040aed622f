"""pgbench on the stack's own PostgreSQL servers: the saga baseline and the yardstick.

The saga baseline runs the saga's SQL per order (bench/pgbench/*.sql) in a schema
bench_pgbench of each service's database, built from migrations/, so the same server,
database, role and settings run it and no relay ever sees its outbox rows. The yardstick
is stock `pgbench -b tpcb-like` on the order cluster: a figure of the machine (and of
what else runs on it), so that runs on different days can be put side by side.
"""

import os
import re
import subprocess

from .config import PG_CLIENTS_ORDER, PG_CLIENTS_OTHER, TPCB_CLIENTS, TPCB_THREADS
from .cpu import SERVICES
from .util import PhaseFailed, finish, jround, psql, run, say, start

_TPS = re.compile(r"^tps = ([0-9.]+)", re.M)
SAGA_SCHEMA = "bench_pgbench"
TPCB_SCHEMA = "bench_tpcb"
TPCB_SCALE = 1
QUIET = "SET client_min_messages = warning;"  # no NOTICE for a schema not there yet


def _spawn(ctx, name: str, args: list, schema: str):
    """Starts pgbench with search_path on a scratch schema, its output in work/NAME.out."""
    path = ctx.work / f"{name}.out"
    with open(path, "w") as log:
        env = dict(os.environ, PGOPTIONS=f"-c search_path={schema}" +
                   (",public" if schema == SAGA_SCHEMA else ""))
        return start(["pgbench", *args], stdout=log, stderr=log, env=env), path


def _tps(proc, path):
    """Waits for pgbench; its tps (without initial connection time), or None with its
    output in the log saying why."""
    finish(proc)
    text = path.read_text()
    m = _TPS.search(text)
    if m:
        return float(m.group(1))
    for line in text.splitlines():
        say(f"  pgbench: {line}")
    return None


def _schema_script(ctx, svc: str) -> str:
    """The saga schema: the services' migrations in bench_pgbench, then the seed rows."""
    root = ctx.cfg.root
    files = sorted((root / "migrations/common").glob("*.sql"))
    files += sorted((root / "migrations" / svc).glob("*.sql"))
    lines = [f"SET client_min_messages = warning; DROP SCHEMA IF EXISTS {SAGA_SCHEMA} CASCADE;",
             f"CREATE SCHEMA {SAGA_SCHEMA}; SET search_path = {SAGA_SCHEMA}, public;"]
    lines += [f"\\i {f}" for f in files] + [f"\\i {ctx.cfg.here / 'pgbench/seed.sql'}"]
    return "\n".join(lines) + "\n"


def _saga_schema(ctx, svc: str) -> None:
    """Creates bench_pgbench with its rows in svc's database."""
    done = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"svc={svc}",
                ctx.stack.url(svc)], stdin_text=_schema_script(ctx, svc), stdout=subprocess.DEVNULL)
    if done.rc != 0:
        raise PhaseFailed(f"{SAGA_SCHEMA} schema on the {svc} database")


def _drop(ctx, svc: str, schema: str) -> None:
    """Drops a scratch schema, quietly: the stack is wiped at the next run anyway."""
    psql(ctx.stack.url(svc), f"{QUIET} DROP SCHEMA IF EXISTS {schema} CASCADE", quiet=True)


def saga_baseline(ctx) -> None:
    """The three scripts at once for T_PG seconds, each with as many clients as the fleet
    has connections writing the saga on that database at SCALE=1; the baseline is the
    smallest rate (an order needs all three databases)."""
    put = ctx.results.put
    try:
        for svc in SERVICES:
            _saga_schema(ctx, svc)
            put(("settings", "synchronous_commit", svc),
                psql(ctx.stack.url(svc), "SHOW synchronous_commit"))
        runs = {}
        for svc in SERVICES:
            clients = PG_CLIENTS_ORDER if svc == "order" else PG_CLIENTS_OTHER
            put(("settings", "pgbench_clients", svc), clients)
            runs[svc] = _spawn(ctx, f"pgbench-{svc}", [
                "-n", "-M", "prepared", "-c", clients, "-j", clients, "-T", ctx.cfg.t["pg"],
                "-f", ctx.cfg.here / f"pgbench/{svc}.sql", ctx.stack.url(svc)], SAGA_SCHEMA)
        rates = {svc: _tps(*proc_path) for svc, proc_path in runs.items()}
        for svc, tps in rates.items():
            put(("saga", "pgbench", "orders_per_s", svc), tps)
        if None in rates.values():
            raise PhaseFailed("a pgbench run gave no tps")
        put("saga.pgbench.orders_per_s.min", min(rates.values()))
    finally:
        for svc in SERVICES:
            _drop(ctx, svc, SAGA_SCHEMA)


def yardstick(ctx) -> None:
    """Stock tpcb-like on the order cluster, fleet idle: `pgbench -i -s 1 -q` into a
    scratch schema of the order database (the order role owns it), then -c 8 -j 2."""
    seconds, url = ctx.cfg.t["tpcb"], ctx.stack.url("order")
    ctx.results.put("settings.pgbench_tpcb", {
        "database": "order", "schema": TPCB_SCHEMA, "scale": TPCB_SCALE,
        "clients": TPCB_CLIENTS, "threads": TPCB_THREADS, "seconds": seconds})
    ctx.results.put("machine.pgbench_tpcb_tps", None)
    try:
        if psql(url, f"{QUIET} DROP SCHEMA IF EXISTS {TPCB_SCHEMA} CASCADE; "
                     f"CREATE SCHEMA {TPCB_SCHEMA}") is None:
            raise PhaseFailed(f"CREATE SCHEMA {TPCB_SCHEMA} on the order database")
        init, path = _spawn(ctx, "tpcb-init", ["-i", "-s", TPCB_SCALE, "-q", url], TPCB_SCHEMA)
        if finish(init).rc != 0:
            say(f"  pgbench -i: {path.read_text().strip()}")
            raise PhaseFailed("pgbench -i on the order database")
        tps = _tps(*_spawn(ctx, "tpcb", ["-n", "-b", "tpcb-like", "-c", TPCB_CLIENTS, "-j",
                                          TPCB_THREADS, "-T", seconds, url], TPCB_SCHEMA))
        ctx.results.put("machine.pgbench_tpcb_tps", jround(tps, 1))
    finally:
        _drop(ctx, "order", TPCB_SCHEMA)
