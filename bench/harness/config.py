"""Settings of one run: where things are, how long each phase lasts, how hard it loads.

Everything that the environment can change (BENCH_QUICK, BENCH_OUT, BIN_DIR,
BENCH_TOOLS_DIR, SAGA_COST_RATE, BENCH_ONLY, BENCH_PEERS, SHOP_CACHE) is read here once, so that the phases read
plain attributes and a reader finds every knob in one place.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import pgss

# Load settings, the same for every HTTP figure: wrk's closed loop and our open loop.
CONNS = 32
WRK_THREADS = 2
PG_CLIENTS_ORDER = 3  # CreateOrder handler, saga consumer, outbox relay (see README)
PG_CLIENTS_OTHER = 2  # saga consumer, outbox relay
N_USERS = 8
N_PRODUCTS = 8
TPCB_CLIENTS = 8  # the machine yardstick: stock pgbench tpcb-like, -c 8 -j 2
TPCB_THREADS = 2

# The gateway's per-user budget and login limits would turn a benchmark into 429s.
GATEWAY_ENV = {
    "GATEWAY_ENV_USER_RATE_LIMIT": "100000000",
    "GATEWAY_ENV_LOGIN_RATE_IP": "1000000",
    "GATEWAY_ENV_LOGIN_RATE_ACCOUNT": "1000000",
    "GATEWAY_ENV_REGISTER_RATE_IP": "1000000",
}

# The programs as shipped export no spans (docs/observability.md: export is off unless a
# receiver is named); the bench stack names Jaeger like every local stack, so the
# programs are told OTEL_TRACES_EXPORTER=none here. The figures then measure what every
# earlier run measured, and the peers (which trace nothing) are compared like for like;
# the trace_cost phase alone turns export on, to price it.
TRACING_OFF_ENV = {f"{p}_ENV_OTEL_TRACES_EXPORTER": "none"
                   for p in ("GATEWAY", "ORDER_SVC", "PRODUCT_SVC", "USER_SVC")}

FULL_SECONDS = dict(load=8, fixed=6, step=10, half=20, pg=15, drain=30, cost=20, idle=10, tpcb=10)
QUICK_SECONDS = dict(load=2, fixed=2, step=3, half=3, pg=2, drain=10, cost=3, idle=2, tpcb=2)
FULL_STEPS = (20, 30, 45, 70, 100, 150, 230, 340, 510, 770, 1150)  # about x1.5 apart
QUICK_STEPS = (20, 40)


def _flag(name: str) -> bool:
    """BENCH_QUICK as bash's ((QUICK)) read it: any number but 0 turns it on."""
    value = os.environ.get(name, "0").strip() or "0"
    try:
        return int(value) != 0
    except ValueError:
        return True


def _number(text: str):
    """A rate from the environment: 40 stays 40 (not 40.0) in results.json."""
    v = float(text)
    return int(v) if v == int(v) else v


PEERS = ("nestjs-gateway", "go-order-svc")  # bench/peers/<name>, issue 17


def _peers(raw, quick: bool) -> frozenset:
    """BENCH_PEERS: unset → every peer (none with BENCH_QUICK), "none" or "" → none,
    else a comma list of PEERS."""
    if raw is None:
        return frozenset() if quick else frozenset(PEERS)
    names = frozenset(p.strip() for p in raw.split(",") if p.strip() and p.strip() != "none")
    unknown = names - set(PEERS)
    if unknown:
        raise SystemExit("BENCH_PEERS: unknown peer(s) %s (known: %s)"
                         % (", ".join(sorted(unknown)), ", ".join(PEERS)))
    return names


@dataclass
class Config:
    """Paths and durations of one run, resolved from the environment at start."""

    root: Path
    here: Path
    bin_dir: Path
    tools_dir: Path
    out: Path
    quick: bool
    go_bin: Path
    cost_rate: float
    t: dict = field(default_factory=dict)
    steps: tuple = ()
    startup_runs: int = 3
    only: frozenset = frozenset()  # BENCH_ONLY's phase groups; empty: every phase
    peers: frozenset = frozenset()  # BENCH_PEERS: the peers (bench/peers) to compare with

    def wants(self, group: str) -> bool:
        """Whether a phase group (read, saga, cost, trace, security, baseline, startup) runs: all unless
        BENCH_ONLY names some (a partial run for experiments; its JSON lacks keys)."""
        return not self.only or group in self.only

    def wants_peer(self, peer: str, group: str) -> bool:
        """Whether a peer's phase runs: the peer is in BENCH_PEERS (by default every peer
        in a full run, none in a quick one) and BENCH_ONLY, if set, names its group."""
        return peer in self.peers and self.wants(group)

    @classmethod
    def from_env(cls) -> "Config":
        """Reads the environment once; the tools default to $BIN_DIR/bench as before the
        programs are copied (the copy holds the four programs only)."""
        here = Path(__file__).resolve().parent.parent
        root = here.parent
        bin_dir = Path(os.environ.get("BIN_DIR") or root / "build-release")
        cache = os.environ.get("SHOP_CACHE") or (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shop-fleet")
        quick = _flag("BENCH_QUICK")
        return cls(
            root=root, here=here, bin_dir=bin_dir,
            tools_dir=Path(os.environ.get("BENCH_TOOLS_DIR") or bin_dir / "bench"),
            out=Path(os.environ.get("BENCH_OUT") or here / "results.json"),
            quick=quick, go_bin=Path(cache) / "go-bin",
            cost_rate=_number(os.environ.get("SAGA_COST_RATE") or "40"),
            t=dict(QUICK_SECONDS if quick else FULL_SECONDS),
            steps=QUICK_STEPS if quick else FULL_STEPS,
            startup_runs=1 if quick else 3,
            only=frozenset(g for g in os.environ.get("BENCH_ONLY", "").split(",") if g),
            peers=_peers(os.environ.get("BENCH_PEERS"), quick))

    def export(self) -> None:
        """What the stack script and the programs must see: the bench profile, the
        programs' directory, the gateway's raised limits and span export off."""
        os.environ["STACK_PROFILE"] = "bench"
        os.environ["BIN_DIR"] = str(self.bin_dir)
        os.environ.update(GATEWAY_ENV)
        os.environ.update(TRACING_OFF_ENV)
        if pgss.enabled():
            pgss.export()
