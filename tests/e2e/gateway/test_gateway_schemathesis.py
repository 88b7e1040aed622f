#!/usr/bin/python3
"""schemathesis against the gateway's own OpenAPI document (issue 7).

    test_gateway_schemathesis.py VENV_DIR -- PROGRAM...   (every program of deploy/fleet.conf)

Starts the fleet (gateway_stack.py), logs in as a fresh admin, and runs
schemathesis (PyPI, pinned below; installed into VENV_DIR on first use) on
/api/v1/openapi.json with that token, in positive and negative data modes.
It fails on any 5xx, on a status code the document does not list for the
operation, on a wrong content type or headers, and on a body that does not
match the documented schema. /auth/logout is left out: it would end the
session the run authenticates with (its behaviour is covered end to end in
test_gateway_e2e.py).
"""
import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_stack import run_suite, split_argv  # noqa: E402

SCHEMATHESIS = "schemathesis==4.32.5"
EXAMPLES = "25"


def schemathesis_bin(venv):
    exe = os.path.join(venv, "bin", "schemathesis")
    if not os.path.exists(exe):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", SCHEMATHESIS],
                       check=True, timeout=600)
    return exe


def main():
    (venv,), binaries, _ = split_argv(sys.argv[1:])
    exe = schemathesis_bin(venv)

    def suite(stack, gw):
        email = "schemathesis-%s@e2e.test" % uuid.uuid4().hex[:8]
        password = "schemathesis-password-1"
        stack.create_admin(email, password)
        r = gw.post("/api/v1/auth/login", {"email": email, "password": password})
        assert r.status == 200, r
        base = "http://127.0.0.1:%d" % gw.port
        cmd = [exe, "run", base + "/api/v1/openapi.json", "--url", base,
               "-H", "Authorization: Bearer " + r.json["access_token"],
               "--checks", "not_a_server_error,status_code_conformance,"
                           "content_type_conformance,response_headers_conformance,"
                           "response_schema_conformance",
               "--exclude-path", "/api/v1/auth/logout",
               "--phases", "examples,coverage,fuzzing",
               "--max-examples", EXAMPLES, "--seed", "7", "--workers", "2",
               "--request-timeout", "10", "--generation-database", "none",
               "--no-color", "--report", "junit", "--report-dir",
               os.path.join(stack.logdir, "schemathesis")]
        print(" ".join(c if not c.startswith("Authorization") else "Authorization: ..."
                       for c in cmd), flush=True)
        ok = subprocess.run(cmd, timeout=540).returncode == 0
        print("schemathesis: %s" % ("passed" if ok else "FAILED"))
        return ok

    run_suite(binaries, suite, USER_RATE_LIMIT=1000000)


if __name__ == "__main__":
    main()
