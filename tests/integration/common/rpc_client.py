#!/usr/bin/python3
"""A real gRPC client (Debian's python3-grpcio) against the shop RPC server layer.

    rpc_client.py PORT SCENARIO [ARGS...]

Each scenario calls shop.test.v1.EchoService (tests/proto/shop/test/v1/
echo_service.proto) or grpc.health.v1.Health on 127.0.0.1:PORT, checks what came
back, prints "PASS <scenario>" (plus facts the C test checks) and exits 0, or
prints what did not hold and exits 1. Calls are generic (bytes in, bytes out):
the few messages involved are encoded and decoded by hand (tests/support/
grpc_support.py), so the script needs nothing but grpcio. One scenario is a server
instead: status_server answers Fail with a grpc-status-details-bin trailer as other gRPC
libraries write it, for the C client (PORT is then unused).
"""
import os
import sys
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from grpc_support import (BAD_REQUEST_TYPE_URL, HEALTH_CHECK, TIMEOUT_S, decode,  # noqa: E402
                          f_int, f_str, field_str, status_details)

SVC = "/shop.test.v1.EchoService/"


# --- messages and helpers ----------------------------------------------------------

def fail_request(code, message, violations=(), internal=False):
    body = f_int(1, code) + f_str(2, message)
    for field, desc in violations:
        body += f_str(3, f_str(1, field) + f_str(2, desc))
    if internal:
        body += f_int(4, 1)
    return body


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def method(ch, name):
    return ch.unary_unary(SVC + name if not name.startswith("/") else name)


def expect_error(fn, req, code, timeout=TIMEOUT_S, **kw):
    try:
        fn(req, timeout=timeout, **kw)
    except grpc.RpcError as e:
        check(e.code() == code, "expected %s, got %s (%s)" % (code, e.code(), e.details()))
        return e
    raise AssertionError("expected %s, the call succeeded" % code)


# --- scenarios ---------------------------------------------------------------------

def s_echo(ch, args):
    md = (("x-request-id", "req-123"),
          ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
          ("x-user-id", "8a3f2c4e-0000-7000-8000-000000000001"),
          ("x-user-role", "admin"))
    resp, call = method(ch, "Echo").with_call(f_str(1, "hello, wörld"), timeout=TIMEOUT_S,
                                              metadata=md)
    f = decode(resp)
    check(field_str(f, 1) == "hello, wörld", "message echoed: %r" % field_str(f, 1))
    check(field_str(f, 2) == "req-123", "x-request-id seen: %r" % field_str(f, 2))
    check(field_str(f, 3) == md[1][1], "traceparent seen: %r" % field_str(f, 3))
    check(field_str(f, 4) == md[2][1], "x-user-id seen: %r" % field_str(f, 4))
    check(field_str(f, 5) == "admin", "x-user-role seen: %r" % field_str(f, 5))
    initial = dict(call.initial_metadata())
    check(initial.get("x-echo-instance") == field_str(f, 6),
          "response metadata x-echo-instance: %r" % initial)
    check(call.code() == grpc.StatusCode.OK, "status OK")
    # Without metadata the server sees none.
    f = decode(method(ch, "Echo")(f_str(1, ""), timeout=TIMEOUT_S))
    check(all(field_str(f, n) == "" for n in (1, 2, 3, 4, 5)), "no metadata: %r" % f)


CODES = [(3, grpc.StatusCode.INVALID_ARGUMENT), (5, grpc.StatusCode.NOT_FOUND),
         (6, grpc.StatusCode.ALREADY_EXISTS), (7, grpc.StatusCode.PERMISSION_DENIED),
         (8, grpc.StatusCode.RESOURCE_EXHAUSTED), (9, grpc.StatusCode.FAILED_PRECONDITION),
         (10, grpc.StatusCode.ABORTED), (13, grpc.StatusCode.INTERNAL),
         (14, grpc.StatusCode.UNAVAILABLE), (16, grpc.StatusCode.UNAUTHENTICATED)]


def s_status(ch, args):
    fail = method(ch, "Fail")
    for num, code in CODES:
        msg = "order %d not found — détail" % num
        e = expect_error(fail, fail_request(num, msg), code)
        check(e.details() == msg, "message of %s: %r" % (code, e.details()))
    check(fail(fail_request(0, ""), timeout=TIMEOUT_S) == b"", "code 0 answers OK")


def s_violations(ch, args):
    violations = [("lines[2].quantity", "must be 1..1000"), ("email", "is not an email")]
    e = expect_error(method(ch, "Fail"), fail_request(3, "invalid order", violations),
                     grpc.StatusCode.INVALID_ARGUMENT)
    check(e.details() == "invalid order", "message: %r" % e.details())
    # grpc-status-details-bin: google.rpc.Status {code 3, message, details: [Any]}.
    raw = status_details(e)
    check(isinstance(raw, bytes), "grpc-status-details-bin present: %r" % e.trailing_metadata())
    status = decode(raw)
    check(status.get(1) == [3], "Status.code: %r" % status.get(1))
    check(field_str(status, 2) == "invalid order", "Status.message: %r" % status.get(2))
    check(len(status.get(3, [])) == 1, "one detail: %r" % status.get(3))
    any_ = decode(status[3][0])
    check(field_str(any_, 1) == BAD_REQUEST_TYPE_URL, "Any.type_url: %r" % any_.get(1))
    bad = decode(any_[2][0])
    got = [(field_str(decode(v), 1), field_str(decode(v), 2)) for v in bad.get(1, [])]
    check(got == violations, "violations: %r" % got)
    # No violations, no details key.
    e = expect_error(method(ch, "Fail"), fail_request(5, "gone"), grpc.StatusCode.NOT_FOUND)
    check(status_details(e) is None, "no details without fields")


# An error not written for the client (a database's, a library's) is answered with a
# generic status and message, whatever its code, and without field violations.
REDACTED = [(3, grpc.StatusCode.INTERNAL, "internal error"),
            (5, grpc.StatusCode.INTERNAL, "internal error"),
            (6, grpc.StatusCode.INTERNAL, "internal error"),
            (9, grpc.StatusCode.INTERNAL, "internal error"),
            (13, grpc.StatusCode.INTERNAL, "internal error"),
            (2, grpc.StatusCode.INTERNAL, "internal error"),
            (4, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"),
            (8, grpc.StatusCode.UNAVAILABLE, "service unavailable, retry later"),
            (10, grpc.StatusCode.UNAVAILABLE, "service unavailable, retry later"),
            (14, grpc.StatusCode.UNAVAILABLE, "service unavailable, retry later")]


def s_redacted(ch, args):
    fail = method(ch, "Fail")
    for num, code, shown in REDACTED:
        msg = "postgresql 22008: interval out of range (%d)" % num
        e = expect_error(fail, fail_request(num, msg, [("page_token", "secret detail")],
                                            internal=True), code)
        check(e.details() == shown, "message of internal %d: %r" % (num, e.details()))
        check(status_details(e) is None, "no field detail for internal %d" % num)


def s_deadline(ch, args):
    start = time.monotonic()
    expect_error(method(ch, "Sleep"), f_int(1, 3000), grpc.StatusCode.DEADLINE_EXCEEDED,
                 timeout=0.2)
    elapsed = time.monotonic() - start
    check(elapsed < 1.0, "deadline honoured in %.3f s" % elapsed)


def s_unimplemented(ch, args):
    for path in (SVC + "NoSuchMethod", "/no.such.Service/Call", "/grpc.health.v1.Health/Watch"):
        start = time.monotonic()
        e = expect_error(method(ch, path), b"", grpc.StatusCode.UNIMPLEMENTED, timeout=5)
        elapsed = time.monotonic() - start
        check(elapsed < 1.0, "%s answered in %.3f s" % (path, elapsed))
        check(path in e.details(), "details name the method: %r" % e.details())


def s_health(ch, args):
    expected = {"serving": 1, "not_serving": 2}[args[0]]
    check_fn = ch.unary_unary(HEALTH_CHECK)
    for service in ("", "shop.test.v1.EchoService", "grpc.health.v1.Health"):
        f = decode(check_fn(f_str(1, service), timeout=TIMEOUT_S))
        status = f.get(1, [0])[0]
        check(status == expected, "%r: status %d, expected %d" % (service, status, expected))
    e = expect_error(check_fn, f_str(1, "shop.nope.v1.NopeService"), grpc.StatusCode.NOT_FOUND)
    check("shop.nope.v1.NopeService" in e.details(), "details: %r" % e.details())


def s_concurrent(ch, args):
    n = int(args[0])
    echo = method(ch, "Echo")
    futures = [echo.future(f_str(1, "m%d" % i), timeout=60,
                           metadata=(("x-request-id", "r%d" % i),)) for i in range(n)]
    bad = []
    for i, fut in enumerate(futures):
        try:
            f = decode(fut.result())
            if field_str(f, 1) != "m%d" % i or field_str(f, 2) != "r%d" % i:
                bad.append((i, f))
        except grpc.RpcError as e:
            bad.append((i, e.code(), e.details()))
    check(not bad, "%d of %d calls failed, first: %r" % (len(bad), n, bad[:3]))
    print("calls=%d" % n)


def s_shutdown(ch, args):
    n, millis = int(args[0]), int(args[1])
    sleep = method(ch, "Sleep")
    futures = [sleep.future(f_int(1, millis), timeout=30) for _ in range(n)]
    counts = {"ok": 0, "cancelled": 0, "unavailable": 0}
    other = []
    for fut in futures:
        try:
            f = decode(fut.result())
            check(f.get(1, [0])[0] == millis, "slept %r" % f)
            counts["ok"] += 1
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                counts["cancelled"] += 1
            elif e.code() == grpc.StatusCode.UNAVAILABLE:
                counts["unavailable"] += 1
            else:
                other.append((e.code(), e.details()))
    print("ok=%d cancelled=%d unavailable=%d" % (counts["ok"], counts["cancelled"],
                                                 counts["unavailable"]))
    check(not other, "unexpected outcomes: %r" % other)


def s_bad_request(ch, args):
    # Field 1 claims 100 bytes but the message ends: not a valid EchoRequest.
    e = expect_error(method(ch, "Echo"), b"\x0a\x64abc", grpc.StatusCode.INVALID_ARGUMENT)
    check("valid" in e.details(), "details: %r" % e.details())


def _status_details(code, message, details):
    """A google.rpc.Status serialized by hand: {code, message, details: [Any...]}."""
    return f_int(1, code) + f_str(2, message) + b"".join(
        f_str(3, f_str(1, type_url) + f_str(2, value)) for type_url, value in details)


def _fail_standard(request, context):
    """Fail as any gRPC library with the rich error model answers it: FailRequest.code
    3 is INVALID_ARGUMENT with a google.rpc.ErrorInfo (to be ignored) before the
    google.rpc.BadRequest; 9 is FAILED_PRECONDITION with a trailer that does not decode."""
    if decode(request).get(1, [0])[0] == 3:
        bad = f_str(1, f_str(1, "sku") + f_str(2, "must not be empty")) + \
            f_str(1, f_str(1, "lines[1].quantity") + f_str(2, "must be 1..1000"))
        info = f_str(1, "INVALID_SKU") + f_str(2, "shop.example")
        details = _status_details(3, "bad input", [
            ("type.googleapis.com/google.rpc.ErrorInfo", info), (BAD_REQUEST_TYPE_URL, bad)])
        context.set_trailing_metadata((("grpc-status-details-bin", details),))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")
    context.set_trailing_metadata((("grpc-status-details-bin", b"\x0a\xff"),))
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stale")


def s_status_server(ch, args):
    """Not a client: a python3-grpcio server of Fail (_fail_standard) for the C client.
    Prints "PORT <n>", answers two calls, then returns."""
    from concurrent import futures
    import threading

    answered = threading.Semaphore(0)

    def fail(request, context):
        try:
            _fail_standard(request, context)
        finally:
            answered.release()

    handler = grpc.method_handlers_generic_handler("shop.test.v1.EchoService", {
        "Fail": grpc.unary_unary_rpc_method_handler(fail)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=(handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT %d" % port, flush=True)
    try:
        for _ in range(2):
            check(answered.acquire(timeout=30), "the C client called Fail twice")
    finally:
        server.stop(grace=1).wait()


def _tls_channel(port, pki, name=None):
    """A channel to the server with the CA of pki and, when name is given, the
    certificate pki/name.crt (as every python3-grpcio client of the fleet does)."""
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(os.path.join(pki, "ca.crt")),
        private_key=read(os.path.join(pki, name + ".key")) if name else None,
        certificate_chain=read(os.path.join(pki, name + ".crt")) if name else None)
    return grpc.secure_channel("127.0.0.1:%s" % port, creds)


def s_tls(ch, args):
    """args: PORT PKI OTHER_PKI. The server holds user-svc's certificate of PKI."""
    port, pki, other = args
    user = (("x-user-id", "8a3f2c4e-0000-7000-8000-000000000001"), ("x-user-role", "customer"))
    with _tls_channel(port, pki, "gateway") as gw:
        f = decode(method(gw, "Echo")(f_str(1, "hi"), timeout=TIMEOUT_S, metadata=user))
        check(field_str(f, 4) == user[0][1], "the gateway speaks for a user: %r" % f)
        f = decode(gw.unary_unary(HEALTH_CHECK)(b"", timeout=TIMEOUT_S))
        check(f.get(1) == [1], "Health/Check over mTLS is SERVING: %r" % f)
    with _tls_channel(port, pki, "order-svc") as order:
        decode(method(order, "Echo")(f_str(1, "no user"), timeout=TIMEOUT_S))
        e = expect_error(method(order, "Echo"), f_str(1, "as a user"),
                         grpc.StatusCode.PERMISSION_DENIED, metadata=user)
        check("order-svc" in e.details(), "the refusal names the caller: %r" % e.details())
    for what, channel in (("no certificate", _tls_channel(port, pki)),
                          ("another CA's certificate", _tls_channel(port, other, "gateway")),
                          ("plaintext", ch)):
        try:
            method(channel, "Echo")(f_str(1, "x"), timeout=3, metadata=user)
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAVAILABLE,
                  "%s: expected UNAVAILABLE, got %s" % (what, e.code()))
        else:
            raise AssertionError("%s: the call succeeded" % what)
        if channel is not ch:
            channel.close()


SCENARIOS = {
    "echo": s_echo,
    "status": s_status,
    "violations": s_violations,
    "redacted": s_redacted,
    "deadline": s_deadline,
    "unimplemented": s_unimplemented,
    "health": s_health,
    "concurrent": s_concurrent,
    "shutdown": s_shutdown,
    "bad_request": s_bad_request,
    "status_server": s_status_server,
    "tls": s_tls,
}


def main(argv):
    port, name, args = argv[1], argv[2], argv[3:]
    with grpc.insecure_channel("127.0.0.1:%s" % port) as ch:
        try:
            SCENARIOS[name](ch, args)
        except AssertionError as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            return 1
    print("PASS %s" % name, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
