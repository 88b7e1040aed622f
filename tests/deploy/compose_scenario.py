#!/usr/bin/env python3
"""The REST side of the compose test (tests/deploy/compose_e2e.sh), against a gateway
running in containers. Standard library only (http.client).

    compose_scenario.py GW STATE setup ADMIN_EMAIL ADMIN_PASSWORD
        an admin login, a product with stock, a registered customer with money;
        writes STATE (JSON: tokens, ids) for the other commands
    compose_scenario.py GW STATE purchase
        register/deposit done by setup; an order that confirms, its cancel, the refund
    compose_scenario.py GW STATE orders N
        N orders, each must confirm (the saga over every service)
    compose_scenario.py GW STATE reads N
        N reads that reach order-svc (GET /orders) and product-svc (GET /products/ID)

GW is the gateway's base URL (http://127.0.0.1:PORT). Exit status 0 on success, 1 with
a message on any unexpected answer.
"""
import http.client
import json
import sys
import time
import urllib.parse
import uuid

API = "/api/v1"
PASSWORD = "compose test customer 1"


class Fail(Exception):
    pass


class Gateway:
    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80

    def call(self, method, path, body=None, token=None, headers=None):
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, API + path, None if body is None else json.dumps(body), h)
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace")
        return r.status, data

    def expect(self, status, method, path, body=None, token=None, headers=None):
        got, data = self.call(method, path, body, token, headers)
        if got != status:
            raise Fail(f"{method} {path}: {got} (expected {status}): {data}")
        return data


def poll(fn, until, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise Fail(f"{what}: still {value} after {timeout}s")
        time.sleep(0.2)


def login(gw, email, password):
    return gw.expect(200, "POST", "/auth/login", {"email": email, "password": password})[
        "access_token"]


def setup(gw, state, admin_email, admin_password):
    admin = login(gw, admin_email, admin_password)
    sku = "E2E-" + uuid.uuid4().hex[:10].upper()
    product = gw.expect(201, "POST", "/products",
                        {"sku": sku, "name": "compose test mug", "price_cents": 300}, admin)
    gw.expect(200, "PUT", f"/products/{product['id']}/stock", {"available": 100000}, admin)
    email = f"compose-{uuid.uuid4().hex[:12]}@example.com"
    gw.expect(201, "POST", "/auth/register",
              {"email": email, "password": PASSWORD, "display_name": "Compose Test"})
    token = login(gw, email, PASSWORD)
    gw.expect(201, "POST", "/users/me/wallet/deposits", {"amount_cents": 10_000_000}, token,
              {"Idempotency-Key": str(uuid.uuid4())})
    state.update(email=email, token=token, product=product["id"], price=300)
    print(f"setup: admin login, product {product['id']} with stock, customer {email} "
          "registered with 100000.00 in the wallet")


def balance(gw, token):
    return gw.expect(200, "GET", "/users/me/wallet", token=token)["balance_cents"]


def order(gw, state, quantity=1):
    """One order; returns (id, seconds until confirmed)."""
    t0 = time.monotonic()
    r = gw.expect(202, "POST", "/orders",
                  {"lines": [{"product_id": state["product"], "quantity": quantity}]},
                  state["token"], {"Idempotency-Key": str(uuid.uuid4())})
    oid = r["id"]
    final = poll(lambda: gw.expect(200, "GET", f"/orders/{oid}", token=state["token"]),
                 lambda o: o["status"] != "pending", what=f"order {oid}")
    if final["status"] != "confirmed":
        raise Fail(f"order {oid} ended {final['status']} ({final.get('cancel_reason')})")
    return oid, time.monotonic() - t0


def purchase(gw, state):
    token = state["token"]
    before = balance(gw, token)
    oid, took = order(gw, state, quantity=2)
    after = balance(gw, token)
    if after != before - 2 * state["price"]:
        raise Fail(f"wallet {before} -> {after} after a confirmed order of {2 * state['price']}")
    steps = [e["step"] for e in
             gw.expect(200, "GET", f"/orders/{oid}", token=token)["timeline"]]
    if "order_confirmed" not in steps:
        raise Fail(f"order {oid}: timeline {steps}")
    c = gw.expect(200, "POST", f"/orders/{oid}/cancel", token=token)
    if (c["status"], c["cancel_reason"]) != ("cancelled", "user_requested"):
        raise Fail(f"cancel of {oid}: {c}")
    poll(lambda: balance(gw, token), lambda b: b == before, what="refund")
    kinds = [e["kind"] for e in gw.expect(200, "GET", "/users/me/wallet", token=token)["entries"]]
    if "refund" not in kinds:
        raise Fail(f"no refund entry in the wallet: {kinds}")
    print(f"purchase: order {oid} confirmed in {took * 1000:.0f} ms, cancelled, "
          f"refunded ({before} cents again)")


def orders(gw, state, n):
    times = [order(gw, state)[1] for _ in range(n)]
    times.sort()
    print(f"orders: {n} confirmed, p50 {times[len(times) // 2] * 1000:.0f} ms, "
          f"max {times[-1] * 1000:.0f} ms")


def reads(gw, state, n):
    for _ in range(n):
        gw.expect(200, "GET", f"/products/{state['product']}")
        gw.expect(200, "GET", "/orders", token=state["token"])


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    gw, path, cmd, args = Gateway(argv[0]), argv[1], argv[2], argv[3:]
    state = {}
    if cmd != "setup":
        with open(path) as f:
            state = json.load(f)
    try:
        if cmd == "setup":
            setup(gw, state, *args)
            with open(path, "w") as f:
                json.dump(state, f)
        elif cmd == "purchase":
            purchase(gw, state)
        elif cmd == "orders":
            orders(gw, state, int(args[0]))
        elif cmd == "reads":
            reads(gw, state, int(args[0]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Fail, OSError) as e:
        print(f"FAIL ({cmd}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
