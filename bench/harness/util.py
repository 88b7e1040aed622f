"""Small helpers every module uses: logging, the results tree, rounding, child processes.

Child processes all go through start()/finish() here, for two reasons: every one of them
is registered, so that an exception or Ctrl-C anywhere kills what is still running
(a wrk, a pgbench, bench_hello) before the stack is stopped; and each is reaped with
os.wait4, whose rusage is the CPU a load generator spent (reported apart from the
stack's).
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass


class HarnessError(Exception):
    """The harness itself cannot run (no stack, no tools, seeding failed): exit 1."""


class PhaseFailed(Exception):
    """A measurement could not be taken: its figures stay null, the run goes on."""


def say(msg: str) -> None:
    """One log line on stderr, prefixed like the old harness's, so logs read the same."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def jround(x, digits: int = 1):
    """Rounds half away from zero, as jq's round did in the old harness (Python's
    round() rounds half to even, which would move some last digits); None stays None."""
    if x is None:
        return None
    scale = 10 ** digits
    v = math.copysign(math.floor(abs(x) * scale + 0.5), x) / scale
    return int(v) if v == int(v) else v


def parse_json(text):
    """A tool's JSON output, or None when it printed nothing usable: a figure that could
    not be taken is recorded as null rather than failing the run."""
    try:
        return json.loads(text) if text and text.strip() else None
    except ValueError:
        return None


class Results(dict):
    """The results.json tree. Paths are tuples of keys (or dotted strings when no key
    holds a dot) so that phases write one figure at a time, as jput did."""

    @staticmethod
    def _keys(path):
        return path.split(".") if isinstance(path, str) else list(path)

    def put(self, path, value) -> None:
        """Sets a figure, creating the objects on the way."""
        keys = self._keys(path)
        node = self
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value

    def get_path(self, path, default=None):
        """A figure, or default when any key on the way is missing or null."""
        node = self
        for k in self._keys(path):
            if not isinstance(node, dict) or node.get(k) is None:
                return default
            node = node[k]
        return node


# ------------------------------------------------------------ processes ----

_LIVE: set = set()


@dataclass
class Done:
    """A finished child: exit code, its stdout (when captured) and the CPU seconds it
    and its reaped descendants used (utime + stime from wait4)."""

    rc: int
    out: str
    cpu_s: float


def start(args, *, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, quiet=False, env=None,
          stderr=None):
    """Starts a child and registers it, so that kill_all() can end it on any exit.
    stderr goes to the log unless quiet (or stderr says where)."""
    if quiet:
        stderr = subprocess.DEVNULL
    p = subprocess.Popen([str(a) for a in args], stdout=stdout, stdin=stdin, env=env,
                         stderr=stderr, text=True)
    _LIVE.add(p)
    return p


def finish(p, stdin_text=None) -> Done:
    """Feeds stdin (small inputs only), reads stdout to its end, then reaps the child
    with wait4 to get its rusage: Popen.wait() would throw that away."""
    if stdin_text is not None:
        p.stdin.write(stdin_text)
        p.stdin.close()
    out = p.stdout.read() if p.stdout else ""
    if p.stdout:
        p.stdout.close()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    _LIVE.discard(p)
    return Done(p.returncode, out, ru.ru_utime + ru.ru_stime)


def run(args, *, stdin_text=None, quiet=False, stdout=subprocess.PIPE, env=None) -> Done:
    """Runs a child to its end; stderr goes to the log unless quiet."""
    stdin = subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL
    return finish(start(args, stdout=stdout, stdin=stdin, quiet=quiet, env=env), stdin_text)


def psql(url: str, sql: str, *, sep=None, quiet=False):
    """One query's rows as unaligned text (psql -X -qtA), or None when psql failed."""
    args = ["psql", "-X", "-qtA", *(["-F", sep] if sep else []), url, "-c", sql]
    done = run(args, quiet=quiet)
    return done.out.strip() if done.rc == 0 else None


def stop(p, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after timeout: a background child (bench_hello) ends."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _LIVE.discard(p)


def kill_all() -> None:
    """Ends every child still running (the exit path: exception, Ctrl-C, SIGTERM)."""
    for p in list(_LIVE):
        try:
            stop(p, 2.0)
        except OSError:
            pass


# --------------------------------------------------------------- phases ----

def phase(results: Results, name: str, fn, *args) -> None:
    """Runs one measurement and records how long it took. A failure nulls its figures
    and says why in the log; only HarnessError and interrupts end the run."""
    say(f"phase: {name}")
    t0 = time.monotonic()
    try:
        fn(*args)
    except PhaseFailed as e:
        say(f"phase {name} failed (its figures are null): {e}")
    except (HarnessError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - a benchmark never fails on a bad figure
        say(f"phase {name} failed (its figures are null): {e!r}")
        for line in traceback.format_exc().splitlines()[-6:]:
            say(f"  {line}")
    results.put(("settings", "phase_seconds", name), jround(time.monotonic() - t0, 1))
