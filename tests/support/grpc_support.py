"""What the Python gRPC test scripts share (tests/integration/*/test_*_rpc.py and
tests/integration/common/rpc_client.py).

- The protobuf wire format, just enough to build and read the test messages by hand,
  for the scripts that need nothing but grpcio.
- ServiceProcess: a real service binary (product-svc, user-svc, order-svc) as a child
  process against the test stack, gRPC on a port it picks, with the stack's
  certificate of its program (mutual TLS, docs/trust.md).
- tls_channel / tls_env: channels and program settings with the stack's certificates
  (TLS_CA_FILE, <SVC>_TLS_CERT_FILE, ... of `deploy/local/stack.sh env`).
- RpcTestCase: unittest assertions on a call's gRPC status and field violations.
- Page tokens (page_tokens.py, re-exported): forged ones, MAC'd ones under the tests'
  own PAGE_TOKEN_KEY; and the check that no database text reaches a client.

The scripts import it after putting this directory on sys.path from their own
location, so they run as CTest runs them: `python3 path/script.py ARGS`.
"""
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
import kafka_env

from page_tokens import (PAGE_TOKEN_KEY, POS_MAX, b64url, page_token,  # noqa: F401
                         plain_forgeries, tampered, unb64url)

TIMEOUT_S = 10
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
# gRPC's rich error model: a serialized google.rpc.Status in this trailer.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
BAD_REQUEST_TYPE_URL = "type.googleapis.com/google.rpc.BadRequest"

# --- mutual TLS --------------------------------------------------------------------

def _stack_name(program):
    """The short upper-case name the stack's env gives `program`'s certificate
    (order-svc: ORDER, gateway: GATEWAY; a variant such as the bench peer order-svc-go
    takes its service's), or None for a program not of the fleet."""
    if program == "gateway":
        return "GATEWAY"
    m = re.fullmatch(r"([a-z0-9]+)-svc(-[a-z0-9]+)?", program)
    return m.group(1).upper() if m else None


def plaintext():
    """True when the environment opts out of TLS (GRPC_PLAINTEXT=true): the programs
    started here inherit it and the channels made here are plaintext."""
    return os.environ.get("GRPC_PLAINTEXT") == "true"


def tls_files(program):
    """(ca, cert, key): the stack's files of `program` (gateway, order-svc, ...)."""
    short = _stack_name(program)
    return (os.environ["TLS_CA_FILE"], os.environ[short + "_TLS_CERT_FILE"],
            os.environ[short + "_TLS_KEY_FILE"])


def tls_env(program):
    """The settings that give `program` its identity: TLS_CA_FILE, TLS_CERT_FILE,
    TLS_KEY_FILE (none when the program's name is not the fleet's)."""
    if _stack_name(program) is None:
        return {}
    ca, cert, key = tls_files(program)
    return {"TLS_CA_FILE": ca, "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key}


def tls_credentials(program="gateway"):
    """grpc channel credentials presenting `program`'s certificate."""
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    ca, cert, key = tls_files(program)
    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key),
                                        certificate_chain=read(cert))


def tls_channel(target, program="gateway"):
    """A channel to target as `program` (the gateway by default: it may speak for a
    user with x-user-*); plaintext under GRPC_PLAINTEXT=true. The caller closes it."""
    if plaintext():
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, tls_credentials(program))


# --- protobuf wire format --------------------------------------------------------


def varint(n):
    """n as a protobuf varint; negative numbers as their 64-bit two's complement."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def f_str(num, value):
    """Field `num` as length-delimited: a str (UTF-8 encoded), bytes or a message."""
    data = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_int(num, value):
    """Field `num` as a varint (int32/int64/bool/enum)."""
    return varint(num << 3) + varint(value)


def read_varint(buf, i):
    """The varint at buf[i]: (value, index past it)."""
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def decode(buf):
    """Field number -> list of values (int for varints, bytes otherwise)."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            value, i = bytes(buf[i:i + n]), i + n
        else:
            raise ValueError("unexpected wire type %d" % wire)
        fields.setdefault(num, []).append(value)
    return fields


def field_str(fields, num):
    """The first value of string field `num` of decode()'s answer ("" when absent)."""
    return fields.get(num, [b""])[0].decode()


def status_details(err):
    """The raw grpc-status-details-bin trailer of err (None without one)."""
    return dict(err.trailing_metadata() or ()).get(STATUS_DETAILS_KEY)


def violations(err, messages=None):
    """The field -> description map of the google.rpc.BadRequest in err's
    grpc-status-details-bin trailer ({} without one), after checking that the
    google.rpc.Status's code and message equal err's grpc-status and grpc-message.
    Decoded by python3-protobuf when `messages` (load_messages' answer for a descriptor
    set holding google.rpc) is given, else by the wire helpers above."""
    raw = status_details(err)
    if raw is None:
        return {}
    out = {}
    if messages is not None:
        status = messages["google.rpc.Status"].FromString(raw)
        code, message = status.code, status.message
        for any_ in status.details:
            if any_.type_url == BAD_REQUEST_TYPE_URL:
                bad = messages["google.rpc.BadRequest"].FromString(any_.value)
                out.update((v.field, v.description) for v in bad.field_violations)
    else:
        status = decode(raw)
        code, message = status.get(1, [0])[0], field_str(status, 2)
        for any_ in map(decode, status.get(3, [])):
            if field_str(any_, 1) == BAD_REQUEST_TYPE_URL:
                for v in map(decode, decode(any_.get(2, [b""])[0]).get(1, [])):
                    out[field_str(v, 1)] = field_str(v, 2)
    if code != err.code().value[0] or message != (err.details() or ""):
        raise AssertionError("google.rpc.Status {%d, %r} differs from grpc-status %s %r"
                             % (code, message, err.code(), err.details()))
    return out


def load_messages(path):
    """Full message name -> python3-protobuf class, for every message of the
    FileDescriptorSet at `path` (protoc-c writes one at build time)."""
    from google.protobuf import descriptor_pb2, message_factory  # only these scripts need it

    with open(path, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    return message_factory.GetMessages(fds.file)


def unary(channel, path, response_cls=None):
    """A unary-unary callable for `path`: bytes in and out, or python3-protobuf messages
    in and response_cls instances out when response_cls is given."""
    if response_cls is None:
        return channel.unary_unary(path)
    return channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_cls.FromString)


# --- page tokens (page_tokens.py, re-exported here) -----------------------------

# What would betray a database or a library: its name, an SQLSTATE, SQL words.
DB_TEXT = re.compile(r"postgres|sqlstate|libpq|interval|\b[0-9][0-9A-Z]{4}\b|select |where ",
                     re.I)


def assert_no_db_text(test, err):
    """Neither the status message nor a field violation of err betrays the database."""
    texts = [err.details() or ""] + ["%s %s" % kv for kv in violations(err).items()]
    for text in texts:
        test.assertIsNone(DB_TEXT.search(text), text)


# --- services under test -----------------------------------------------------------


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url, sql):
    """Runs `sql` through psql against the database at `url` (stops at the first error);
    the unaligned, tuples-only output, stripped. psql's errors go to stderr."""
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, url],
                         check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip()


# Resolved in the parent: between fork and exec the child only makes the call.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, so a crashed run
    leaves no service behind in its consumer group (prctl PR_SET_PDEATHSIG). The signal
    follows the thread that forked, so start such services from the main thread."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


SERVING = re.compile(r'"msg":"serving".*?"grpc_port":(\d+)')


def consumer_assigned(logs):
    """A ServiceProcess `ready` check: its saga consumer holds partitions. A service
    stopped before its first assignment may abort in librdkafka 2.0's sticky assignor
    (confluentinc/librdkafka#4312), so short-lived extra instances wait for it."""
    return re.search(r'"msg":"kafka partitions assigned".*"partitions":[1-9]', logs)


class ServiceProcess:
    """A service binary as a child process, its output in a temporary log file; gRPC on
    a port it picks (GRPC_ADDR=127.0.0.1:0, read from its `serving` log line), the admin
    HTTP server on `admin_port`."""

    def __init__(self, name, binary, db_env, ready=None, die_with_parent=False, **env):
        """Starts `binary` with DATABASE_URL from the environment variable `db_env`, the
        test defaults and `env` on top, and waits up to 60 s until it serves and
        `ready(logs)` (if given) holds; RuntimeError when it exits or times out."""
        self.name = name
        self.admin_port = free_port()
        full_env = dict(os.environ, DATABASE_URL=os.environ[db_env], GRPC_ADDR="127.0.0.1:0",
                        ADMIN_ADDR="127.0.0.1:%d" % self.admin_port, DB_POOL_SIZE="8",
                        SHUTDOWN_GRACE="5s", STARTUP_TIMEOUT="60s",
                        **kafka_env.service_env(os.path.basename(binary)))
        full_env.update(tls_env(os.path.basename(binary)))
        full_env.update(env)
        self.log = tempfile.NamedTemporaryFile(prefix=name + "-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([binary], env=full_env, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent if die_with_parent else None)
        self.port = self._wait_port(60, ready)

    def _wait_port(self, timeout_s, ready):
        end = time.time() + timeout_s
        while time.time() < end:
            logs = self.logs()
            m = SERVING.search(logs)
            if m and (ready is None or ready(logs)):
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %d:\n%s" % (self.name, self.proc.returncode,
                                                                logs))
            time.sleep(0.05)
        raise RuntimeError("%s did not start:\n%s" % (self.name, self.logs()))

    def channel(self, program="gateway"):
        """A new channel to its gRPC port, as `program` (tls_channel); the caller
        closes it."""
        return tls_channel("127.0.0.1:%d" % self.port, program)

    def logs(self):
        """Everything it has logged so far."""
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM; the exit status (0 after a clean drain, non-zero on sanitizer reports)."""
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def check_stop(self):
        """stop(), asserting a 0 exit status (the log's tail goes to stderr when not).
        Returns the whole log and deletes its file."""
        status = self.stop()
        logs = self.logs()
        if status != 0:
            sys.stderr.write(logs[-20000:])
        assert status == 0, "%s exited with %d after SIGTERM" % (self.name, status)
        os.unlink(self.log.name)
        return logs


# --- assertions ----------------------------------------------------------------------


class RpcTestCase(unittest.TestCase):
    """Assertions on the gRPC status of a call. Subclasses whose messages come from
    python3-protobuf replace `violations` to decode the trailer with it."""

    @staticmethod
    def violations(err):
        """The field violations of err (see the module's violations())."""
        return violations(err)

    def assertStatus(self, code, fn, *args, **kw):
        """fn(*args, **kw) fails with grpc status `code`; the grpc.RpcError."""
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception

    def assertInvalid(self, fields, fn, *args, **kw):
        """INVALID_ARGUMENT whose details name exactly `fields` (in any order)."""
        err = self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, fn, *args, **kw)
        got = self.violations(err)
        self.assertEqual(sorted(got), sorted(fields), got)
        return err
