"""The bench stack: deploy/local/stack.sh with STACK_PROFILE=bench, on copied programs.

The harness owns this stack for the whole run: wiped first, SCALE=1, stopped at exit
whatever happens (bench.py calls down() from its finally). STACK_PORT_BASE reaches the
stack script through the environment.
"""

import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import fleet
from .util import HarnessError, run, say

LOCK_WAIT_S = 1200  # a full run takes about 6 minutes
PROGRAMS = tuple(r.path for r in fleet.programs())  # deploy/fleet.conf


class Stack:
    """Starts, stops and describes the stack; env holds `stack.sh env`'s settings."""

    def __init__(self, root: Path, work: Path):
        self.script = root / "deploy/local/stack.sh"
        self.work = work
        self.env: dict = {}
        self.programs: list = []
        self.programs_from = None
        self._lock = None
        self._lock_path = Path(tempfile.gettempdir()) / (
            "shop-fleet-bench-" + hashlib.md5(str(root).encode()).hexdigest()[:12] + ".lock")

    def call(self, *args, quiet=True, stdin_text=None, extra_env=None):
        """One stack.sh command; its output is dropped unless it is wanted."""
        env = dict(os.environ, **(extra_env or {}))
        stdout = subprocess.DEVNULL if quiet else subprocess.PIPE
        return run([self.script, *args], quiet=quiet, stdout=stdout, env=env,
                   stdin_text=stdin_text)

    def snapshot_programs(self) -> None:
        """Copies the programs under test first: a `make release` elsewhere on a shared
        machine must not swap a binary in the middle of the run."""
        src = Path(os.environ["BIN_DIR"])
        for rel in PROGRAMS:
            if not os.access(src / rel, os.X_OK):
                raise HarnessError(f"{src / rel} is missing (make release)")
            (self.work / "bin" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, self.work / "bin" / rel)
        self.programs_from = str(src)
        os.environ["BIN_DIR"] = str(self.work / "bin")

    def lock(self) -> None:
        """One bench run per checkout at a time: STACK_PORT_BASE moves the ports but not
        the data directory (.data-bench), and a second run's wipe would stop the first
        one's stack in the middle of its load. The lock dies with its process."""
        self._lock = open(self._lock_path, "w")
        deadline, said = time.monotonic() + LOCK_WAIT_S, False
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"another bench run holds {self._lock_path}") from None
                if not said:
                    say(f"another bench run of this checkout is running: waiting ({self._lock_path})")
                    said = True
                time.sleep(2)

    def up(self) -> None:
        """Wiped, SCALE=1, started; then its settings exported into our environment
        (as `set -a; . <(stack.sh env)` did) for the tools and `stack.sh start`."""
        self.lock()
        self.snapshot_programs()
        say(f"starting the bench stack (wiped, SCALE=1, programs from {self.programs_from})")
        self.call("wipe")
        up = run([self.script, "up"], stdout=2, env=dict(os.environ, SCALE="1"))
        if up.rc != 0:
            raise HarnessError("the bench stack did not start")
        self.env = parse_env(self.call("env", quiet=False).out)
        os.environ.update(self.env)
        parts = self.call("parts", quiet=False).out.split()
        self.programs = [p for p in parts if p == "gateway" or _is_instance(p)]

    def down(self) -> None:
        """Stops every part; never raises (it runs on the exit path)."""
        say("stopping the bench stack")
        try:
            self.call("down")
        except OSError as e:
            say(f"stack.sh down: {e}")

    @property
    def data(self) -> Path:
        """$STACK_DATA: pid files in run/, clusters in pg/, logs in log/."""
        return Path(self.env["STACK_DATA"])

    def pid_of(self, part: str):
        """The pid in $STACK_DATA/run/<part>.pid, or None."""
        try:
            return int((self.data / "run" / f"{part}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, part: str) -> bool:
        """Starts one part again and waits until it answers."""
        return self.call("start", part).rc == 0

    def create_admin(self, email: str, password: str) -> bool:
        """user-svc create-admin on this stack, the password on stdin."""
        return self.call("create-admin", email, stdin_text=password + "\n").rc == 0

    def url(self, svc: str) -> str:
        """A service's database URL (the service's own role and database)."""
        return self.env[f"{svc.upper()}_DATABASE_URL"]

    def first_addr(self, svc: str, kind: str) -> str:
        """The first instance's gRPC or admin host:port of a service."""
        return self.env[f"{svc.upper()}_{kind}_ADDRS"].split(",")[0]


def parse_env(text: str) -> dict:
    """`stack.sh env`'s NAME=value lines as a dict; values are shell words (the database
    URLs are quoted for their '&'), so the quotes come off as a shell would take them."""
    env = {}
    for line in text.splitlines():
        if "=" in line:
            name, value = line.split("=", 1)
            env[name] = "".join(shlex.split(value))
    return env


_SERVICE_PROGRAMS = {r.program for r in fleet.services()}


def _is_instance(part: str) -> bool:
    """order-svc-1 and the like: a program instance, not postgres/order or kafka."""
    name, _, k = part.rpartition("-")
    return name in _SERVICE_PROGRAMS and k.isdigit() and len(k) == 1
