"""What the phases share: the settings, the results, the stack and the seeded data.

One object passed to every phase instead of module globals, so that a phase's inputs
are visible at its call and the modules stay independent of each other.
"""

from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .util import Results


@dataclass
class Ctx:
    """The state of one run; the phases read it and fill in results."""

    cfg: Config
    work: Path
    results: Results
    stack: object  # stack.Stack
    load: object = None  # tools.Load
    api: object = None  # seed.Api
    customers: object = None  # seed.Customers
    products: list = field(default_factory=list)
    user_id: str = None
    http_threads: int = 4
    rate_fixed: int = 100
    hello_url: str = None
    hello_proc: object = None
    sampler: object = None  # footprint.Sampler, while the load runs

    @property
    def product(self) -> str:
        """The product every read and gRPC figure fetches."""
        return self.products[0]

    @property
    def gateway_url(self) -> str:
        return self.stack.env["GATEWAY_URL"]
