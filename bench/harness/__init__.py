"""The `make bench` harness: docs/architecture.md §8 measured side by side in one run.

bench/bench.py is the entry point; each module here is one concern of the run (the
stack, the seeding, the load tools, CPU accounting, the phases, the report), so that a
phase can be read, and changed, without reading the others. bench/README.md explains
each method.

The fleet's services and programs come from deploy/fleet.conf, through deploy/fleet.py
(`from . import fleet` in a module here).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "deploy"))
import fleet  # noqa: E402,F401  (deploy/fleet.py, as harness.fleet)
