"""The fleet manifest (deploy/fleet.conf) for Python: tests, chaos, bench.

    import fleet                       # with deploy/ on sys.path (fleet.ROOT)
    fleet.services()                   # [Program(name="order", program="order-svc", ...)]
    fleet.topics()                     # every topic, then the dead-letter topics

The bash reader is deploy/local/fleet.sh; the columns are described in fleet.conf and
deploy/README.md.
"""

import os
from typing import NamedTuple, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "deploy", "fleet.conf")
COLUMNS = ("name", "program", "grpc", "admin", "pg", "database", "consumes", "produces",
           "upstreams")


class Program(NamedTuple):
    name: str
    program: str
    grpc: Optional[int]      # port offsets, None for '-'
    admin: Optional[int]
    pg: Optional[int]
    database: Optional[str]
    consumes: Tuple[str, ...]
    produces: Tuple[str, ...]
    upstreams: Tuple[str, ...]

    @property
    def is_service(self) -> bool:
        return self.grpc is not None

    @property
    def path(self) -> str:
        """The program's path in a build tree."""
        return (f"services/{self.name}/{self.program}" if self.is_service
                else f"{self.program}/{self.program}")

    @property
    def env_prefix(self) -> str:
        """order-svc -> ORDER_SVC."""
        return self.program.upper().replace("-", "_")


def _offset(word):
    return None if word == "-" else int(word)


def _list(word):
    return () if word == "-" else tuple(word.split(","))


def load(path=CONF):
    """Every program of the manifest, in its order. ValueError on a malformed line."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) != len(COLUMNS):
                raise ValueError(f"{path}:{n}: {len(words)} columns, not {len(COLUMNS)}")
            name, program, grpc, admin, pg, db, consumes, produces, upstreams = words
            rows.append(Program(name, program, _offset(grpc), _offset(admin), _offset(pg),
                                None if db == "-" else db, _list(consumes), _list(produces),
                                _list(upstreams)))
    return rows


def services(rows=None):
    """The rows with a gRPC server: the services."""
    return [r for r in (rows or load()) if r.is_service]


def programs(rows=None):
    """Every program, services first (the order stack.sh parts lists them in)."""
    rows = rows or load()
    return services(rows) + [r for r in rows if not r.is_service]


def by_name(rows=None):
    return {r.name: r for r in (rows or load())}


def event_topics(rows=None):
    """Every produced or consumed topic, produced first, each once."""
    out = []
    for r in rows or load():
        for t in r.produces + r.consumes:
            if t not in out:
                out.append(t)
    return out


def topics(rows=None):
    """Every topic the stack creates: the event topics, then their dead-letter topics."""
    ev = event_topics(rows)
    return ev + [t + ".dlq" for t in ev]
