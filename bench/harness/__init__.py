"""The `make bench` harness: DESIGN.md section 8 measured side by side in one run.

bench/bench.py is the entry point; each module here is one concern of the run (the
stack, the seeding, the load tools, CPU accounting, the phases, the report), so that a
phase can be read, and changed, without reading the others. bench/README.md explains
each method.
"""
