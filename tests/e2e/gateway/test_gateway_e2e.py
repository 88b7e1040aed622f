#!/usr/bin/python3
"""The gateway end to end, through a real HTTP client (docs/architecture.md §5, issue 7).

    test_gateway_e2e.py GATEWAY_SRC_DIR -- PROGRAM...   (every program of deploy/fleet.conf)

Starts user-, product- and order-svc and the gateway against the test stack
(gateway_stack.py), then checks every endpoint's success path and, for each,
the failures the issue lists: missing token 401, customer on an admin route 403,
malformed JSON 400, unknown field 400, wrong type 400 naming the field, body
over the limit 413; every token forgery; logout and refresh; ownership; SQL
metacharacters; the login rate limit; the full purchase flow; and that the
route table and gateway/openapi.json describe the same routes.
"""
import base64
import json
import os
import re
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
import grpc_support  # noqa: E402
from gateway_stack import Client, hs_token, run_unittests, split_argv  # noqa: E402

STACK = None
GW = None
SRC = None
TAG = uuid.uuid4().hex[:8]
PASSWORD = "correct horse battery staple"
SQL = "Robert'); DROP TABLE users;-- \" \\ %_ ' OR 1=1 --"
PID = "0190b8a4-7d3e-7000-8000-%012d" % 1  # a well-formed id nobody has
PROBLEMS = "https://shop-fleet.example/problems/"
PROBLEM_TYPES = {400: "validation", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
                 405: "method-not-allowed", 409: "conflict", 412: "precondition-failed",
                 413: "payload-too-large", 415: "unsupported-media-type", 422: "unprocessable",
                 429: "rate-limited", 500: "internal", 503: "unavailable", 504: "timeout"}


def email(name):
    return "%s-%s@e2e.test" % (name, TAG)


def register(name, display=None):
    r = GW.post("/api/v1/auth/register", {"email": email(name), "password": PASSWORD,
                                           "display_name": display or name})
    assert r.status == 201, r
    return r.json


def login(name, password=PASSWORD, client=None):
    r = (client or GW).post("/api/v1/auth/login", {"email": email(name), "password": password})
    assert r.status == 200, r
    return r.json


USERS = {}


def user(name):
    """A registered, logged-in customer: {"id", "token", "refresh"}."""
    if name not in USERS:
        u = register(name)
        t = login(name)
        USERS[name] = {"id": u["id"], "token": t["access_token"], "refresh": t["refresh_token"]}
    return USERS[name]


def admin():
    if "admin" not in USERS:
        uid = STACK.create_admin(email("admin"), PASSWORD)
        t = login("admin")
        USERS["admin"] = {"id": uid, "token": t["access_token"], "refresh": t["refresh_token"]}
    return USERS["admin"]


def claims(**over):
    now = int(time.time())
    c = {"sub": user("alice")["id"], "role": "customer", "sid": "x", "jti": str(uuid.uuid4()),
         "iss": "shop-gateway", "aud": "shop-api", "iat": now, "nbf": now, "exp": now + 600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def new_product(price=250, stock=100, name=None):
    a = admin()
    sku = "E2E-%s-%s" % (TAG, uuid.uuid4().hex[:6])
    r = GW.post("/api/v1/products", {"sku": sku, "name": name or "thing " + sku,
                                     "description": "e2e", "price_cents": price},
                token=a["token"])
    assert r.status == 201, r
    p = r.json
    r = GW.request("PUT", "/api/v1/products/%s/stock" % p["id"], {"available": stock},
                   token=a["token"])
    assert r.status == 200, r
    return p


def poll(fn, until, timeout=30):
    deadline = time.time() + timeout
    while True:
        r = fn()
        if until(r) or time.time() > deadline:
            return r
        time.sleep(0.2)


# Every route with a body: (method, path template, a valid body, a body with a wrong type,
# the field named for it, who may call it).
def body_routes():
    pid = new_product()["id"]
    return [
        ("POST", "/api/v1/auth/register", {"email": "x", "password": "y", "display_name": "z"},
         {"email": 5}, "email", None),
        ("POST", "/api/v1/auth/login", {"email": "x", "password": "y"}, {"password": True},
         "password", None),
        ("POST", "/api/v1/auth/refresh", {"refresh_token": "x"}, {"refresh_token": []},
         "refresh_token", None),
        ("PATCH", "/api/v1/users/me", {"display_name": "n"}, {"shipping_address": "x"},
         "shipping_address", "customer"),
        ("PUT", "/api/v1/users/me/preferences",
         {"language": "en", "currency": "USD", "marketing_opt_in": False},
         {"language": "en", "currency": "USD", "marketing_opt_in": "yes"}, "marketing_opt_in",
         "customer"),
        ("POST", "/api/v1/users/me/wallet/deposits", {"amount_cents": 1}, {"amount_cents": 1.5},
         "amount_cents", "customer"),
        ("POST", "/api/v1/products", {"sku": "x"}, {"price_cents": "10"}, "price_cents", "admin"),
        ("PATCH", "/api/v1/products/%s" % pid, {"name": "n"}, {"active": 1}, "active", "admin"),
        ("PUT", "/api/v1/products/%s/stock" % pid, {"available": 1}, {"available": "1"},
         "available", "admin"),
        ("POST", "/api/v1/orders", {"lines": [{"product_id": pid, "quantity": 1}]},
         {"lines": [{"product_id": pid, "quantity": 1}, {"product_id": pid, "quantity": "2"}]},
         "lines[1].quantity", "customer"),
    ]


AUTH_ROUTES = [
    ("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/users/me"), ("PATCH", "/api/v1/users/me"),
    ("GET", "/api/v1/users/me/preferences"), ("PUT", "/api/v1/users/me/preferences"),
    ("GET", "/api/v1/users/me/wallet"), ("POST", "/api/v1/users/me/wallet/deposits"),
    ("POST", "/api/v1/products"), ("PATCH", "/api/v1/products/" + PID),
    ("DELETE", "/api/v1/products/" + PID), ("PUT", "/api/v1/products/%s/stock" % PID),
    ("POST", "/api/v1/orders"), ("GET", "/api/v1/orders"), ("GET", "/api/v1/orders/" + PID),
    ("POST", "/api/v1/orders/%s/cancel" % PID),
]
ADMIN_ROUTES = [
    ("POST", "/api/v1/products", {"sku": "X"}), ("PATCH", "/api/v1/products/" + PID, {"name": "n"}),
    ("DELETE", "/api/v1/products/" + PID, None),
    ("PUT", "/api/v1/products/%s/stock" % PID, {"available": 1}),
]


def headers_for(method, path):
    if path.endswith("/deposits") or (method == "POST" and path == "/api/v1/orders"):
        return {"Idempotency-Key": str(uuid.uuid4())}
    return {}


class Problems(unittest.TestCase):
    def assertProblem(self, r, status, field=None, kind=None):
        """kind: the problem type's class when it is not the status's own."""
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.header("content-type").startswith("application/problem+json"), r.headers)
        self.assertEqual(r.json["status"], status)
        self.assertEqual(r.json["type"], PROBLEMS + (kind or PROBLEM_TYPES[status]), r)
        self.assertTrue(r.json["title"] and r.json["detail"])
        self.assertEqual(r.json["request_id"], r.header("x-request-id"))
        if field is not None:
            self.assertIn(field, [e["field"] for e in r.json["errors"]], r)


class Auth(Problems):
    def test_register_login_and_me(self):
        r = GW.post("/api/v1/auth/register", {"email": email("carol"), "password": PASSWORD,
                                               "display_name": "Carol"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("location"), "/api/v1/users/me")
        self.assertEqual(r.json["role"], "customer")
        self.assertEqual(r.json["email"], email("carol"))
        again = GW.post("/api/v1/auth/register", {"email": email("carol").upper(),
                                                   "password": PASSWORD, "display_name": "C"})
        self.assertProblem(again, 409)
        t = login("carol")
        self.assertEqual(t["token_type"], "Bearer")
        self.assertLessEqual(t["expires_in"], 900)
        self.assertEqual(len(t["refresh_token"]), 43)
        me = GW.get("/api/v1/users/me", token=t["access_token"])
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json["user"]["id"], r.json["id"])
        bad = GW.post("/api/v1/auth/login", {"email": email("carol"), "password": "wrong-password"})
        self.assertProblem(bad, 401)
        nobody = GW.post("/api/v1/auth/login", {"email": email("nobody"), "password": PASSWORD})
        self.assertProblem(nobody, 401)
        self.assertEqual(bad.json["detail"], nobody.json["detail"])

    def test_every_protected_route_needs_a_token(self):
        for method, path in AUTH_ROUTES:
            r = GW.request(method, path, headers=headers_for(method, path))
            self.assertProblem(r, 401)
            self.assertEqual(r.header("www-authenticate"), "Bearer", (method, path))

    def test_customer_on_admin_routes_is_403_and_x_user_headers_are_ignored(self):
        c = user("alice")
        for method, path, body in ADMIN_ROUTES:
            r = GW.request(method, path, body=body, token=c["token"],
                           headers={"X-User-Role": "admin", "X-User-Id": admin()["id"]})
            self.assertProblem(r, 403)

    def test_forged_tokens_are_401(self):
        s = STACK.secret
        forged = {
            "alg none": hs_token(s, claims(), alg="none"),
            "HS512": hs_token(s, claims(), alg="HS512"),
            "wrong signature": hs_token(s + "x", claims()),
            "expired": hs_token(s, claims(iat=int(time.time()) - 1200,
                                          nbf=int(time.time()) - 1200,
                                          exp=int(time.time()) - 300)),
            "not yet valid": hs_token(s, claims(nbf=int(time.time()) + 600,
                                                exp=int(time.time()) + 1200)),
            "wrong issuer": hs_token(s, claims(iss="evil")),
            "wrong audience": hs_token(s, claims(aud="other-api")),
            "no sid": hs_token(s, claims(sid=None)),
            "unknown session": hs_token(s, claims(sid=str(uuid.uuid4()))),
            "garbage": "abc.def.ghi",
        }
        for what, token in forged.items():
            r = GW.get("/api/v1/users/me", token=token)
            self.assertEqual(r.status, 401, "%s: %s" % (what, r))

    def test_logout_kills_the_access_token_at_once(self):
        register("dave")
        t = login("dave")
        self.assertEqual(GW.get("/api/v1/users/me", token=t["access_token"]).status, 200)
        r = GW.post("/api/v1/auth/logout", token=t["access_token"])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.raw, b"")
        self.assertProblem(GW.get("/api/v1/users/me", token=t["access_token"]), 401)
        self.assertProblem(GW.post("/api/v1/auth/refresh", {"refresh_token": t["refresh_token"]}),
                           401)

    def test_refresh_rotates_and_reuse_revokes_the_session(self):
        register("erin")
        t1 = login("erin")
        r = GW.post("/api/v1/auth/refresh", {"refresh_token": t1["refresh_token"]})
        self.assertEqual(r.status, 200, r)
        t2 = r.json
        self.assertNotEqual(t2["refresh_token"], t1["refresh_token"])
        self.assertEqual(t2["session_id"], t1["session_id"])
        self.assertEqual(GW.get("/api/v1/users/me", token=t2["access_token"]).status, 200)
        # The first refresh token again: the session is revoked, every token dies.
        self.assertProblem(GW.post("/api/v1/auth/refresh", {"refresh_token": t1["refresh_token"]}),
                           401)
        self.assertProblem(GW.get("/api/v1/users/me", token=t2["access_token"]), 401)
        self.assertProblem(GW.post("/api/v1/auth/refresh", {"refresh_token": t2["refresh_token"]}),
                           401)

    def test_es256_tokens_and_algorithm_confusion(self):
        # A gateway signing with a P-256 key pair from files (JWT_ALG=ES256).
        key, pub = os.path.join(STACK.logdir, "es256.key"), os.path.join(STACK.logdir, "es256.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", key], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True,
                       capture_output=True)
        gw = STACK.start_gateway("es256", JWT_ALG="ES256", JWT_SECRET="",
                                 JWT_PRIVATE_KEY_FILE=key, JWT_PUBLIC_KEY_FILE=pub)
        user("alice")
        r = gw.post("/api/v1/auth/login", {"email": email("alice"), "password": PASSWORD})
        self.assertEqual(r.status, 200, r)
        t = r.json["access_token"]
        header = json.loads(base64.urlsafe_b64decode(t.split(".")[0] + "=="))
        self.assertEqual(header["alg"], "ES256")
        self.assertEqual(gw.get("/api/v1/users/me", token=t).status, 200)
        with open(pub) as f:
            pem = f.read()
        sid = json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "=="))["sid"]
        confused = hs_token(pem, claims(sid=sid))  # HS256 keyed with the public key
        self.assertProblem(gw.get("/api/v1/users/me", token=confused), 401)
        self.assertProblem(gw.get("/api/v1/users/me", token=hs_token(STACK.secret, claims(sid=sid))),
                           401)
        self.assertEqual(STACK.stop_gateway("es256"), 0)

    def test_login_is_rate_limited_per_ip(self):
        # A gateway of its own with the default limits and fresh counters.
        gw = STACK.start_gateway("ratelimit")
        for i in range(10):
            r = gw.post("/api/v1/auth/login", {"email": email("rl%d" % i), "password": "nope-nope"})
            self.assertEqual(r.status, 401, r)
        r = gw.post("/api/v1/auth/login", {"email": email("rl-last"), "password": "nope-nope"})
        self.assertProblem(r, 429)
        self.assertTrue(1 <= int(r.header("retry-after")) <= 60, r.headers)
        self.assertEqual(STACK.stop_gateway("ratelimit"), 0)


class Bodies(Problems):
    def call(self, method, path, who, **kw):
        token = {"customer": user("alice")["token"], "admin": admin()["token"], None: None}[who]
        return GW.request(method, path, token=token, headers=headers_for(method, path), **kw)

    def test_malformed_unknown_wrong_type_and_too_large_bodies(self):
        for method, path, good, wrong, field, who in body_routes():
            with self.subTest(route=(method, path)):
                r = self.call(method, path, who, raw=b'{"a":')
                self.assertProblem(r, 400)
                # Where the JSON breaks, not the parser's own words (issue 14).
                self.assertRegex(r.json["detail"], r"^malformed JSON at line \d+ column \d+$")
                self.assertProblem(self.call(method, path, who, raw=b'[1,2]'), 400)
                bad = dict(good, colour="red")
                self.assertProblem(self.call(method, path, who, body=bad), 400, "colour")
                self.assertProblem(self.call(method, path, who, body=wrong), 400, field)
                big = dict(good, padding="x" * 70000)
                self.assertProblem(self.call(method, path, who, body=big), 413)
                plain = dict(headers_for(method, path), **{"Content-Type": "text/plain"})
                token = {"customer": user("alice")["token"], "admin": admin()["token"],
                         None: None}[who]
                r = GW.request(method, path, raw=json.dumps(good).encode(), token=token,
                               headers=plain)
                self.assertProblem(r, 415)

    def test_chunked_body_over_the_limit_is_413(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", GW.port, timeout=30)
        chunks = (b"x" * 8192 for _ in range(10))
        conn.request("POST", "/api/v1/auth/login", body=chunks,
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        r = conn.getresponse()
        self.assertEqual(r.status, 413)
        conn.close()

    def test_request_ids(self):
        r = GW.get("/healthz", headers={"X-Request-Id": "client.id_1-2"})
        self.assertEqual(r.header("x-request-id"), "client.id_1-2")
        r = GW.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
        self.assertRegex(r.header("x-request-id"), r"^[0-9a-f-]{36}$")
        self.assertProblem(GW.get("/api/v1/nothing-here"), 404)
        r = GW.request("DELETE", "/api/v1/orders", token=user("alice")["token"])
        self.assertProblem(r, 405)
        self.assertEqual(r.header("allow"), "POST, GET, HEAD")

    def test_list_parameters_are_validated(self):
        for q in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"sort": "name"}):
            self.assertProblem(GW.get("/api/v1/products", query=q), 400)
        r = GW.get("/api/v1/products", query={"limit": "1"})
        self.assertEqual(r.status, 200, r)
        self.assertLessEqual(len(r.json["products"]), 1)


class Users(Problems):
    def test_profile_preferences_wallet_and_sql_metacharacters(self):
        register("frank", display=SQL)
        t = login("frank")["access_token"]
        me = GW.get("/api/v1/users/me", token=t)
        self.assertEqual(me.json["user"]["display_name"], SQL)
        addr = {"line1": SQL, "line2": "'; --", "city": "O'Brien \"x\"", "region": "%",
                "postal_code": "_", "country": "US"}
        r = GW.request("PATCH", "/api/v1/users/me", {"shipping_address": addr, "phone": ""},
                       token=t)
        self.assertEqual(r.status, 200, r)
        again = GW.get("/api/v1/users/me", token=t).json["profile"]["shipping_address"]
        self.assertEqual(again, addr)
        self.assertProblem(GW.request("PATCH", "/api/v1/users/me", {}, token=t), 400)
        p = GW.get("/api/v1/users/me/preferences", token=t)
        self.assertEqual(p.status, 200, p)
        self.assertEqual(set(p.json), {"language", "currency", "marketing_opt_in"})
        new = {"language": "de", "currency": "USD", "marketing_opt_in": True}
        r = GW.request("PUT", "/api/v1/users/me/preferences", new, token=t)
        self.assertEqual((r.status, r.json), (200, new), r)
        r = GW.request("PUT", "/api/v1/users/me/preferences", {"language": "en"}, token=t)
        self.assertProblem(r, 400, "currency")
        w = GW.get("/api/v1/users/me/wallet", token=t)
        self.assertEqual((w.status, w.json["balance_cents"]), (200, 0), w)

    def test_deposit_is_idempotent_and_needs_a_key(self):
        t = user("grace")["token"]
        r = GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 500}, token=t)
        self.assertProblem(r, 400, "Idempotency-Key")
        key = {"Idempotency-Key": str(uuid.uuid4())}
        r = GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 500}, token=t, headers=key)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["balance_cents"], 500)
        self.assertIsNone(r.header("idempotent-replayed"))
        first = r.json
        # A replay answers what the first answer did (draft-ietf-httpapi-idempotency-key-header).
        r = GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 500}, token=t, headers=key)
        self.assertEqual((r.status, r.json["replayed"], r.json["balance_cents"]), (201, True, 500))
        self.assertEqual(r.json["entry"], first["entry"])
        self.assertEqual(r.header("idempotent-replayed"), "true")
        r = GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 9}, token=t, headers=key)
        self.assertProblem(r, 422, "Idempotency-Key", kind="idempotency-key-reused")
        self.assertEqual(r.json["title"], "Idempotency-Key Reused")
        self.assertEqual(GW.get("/api/v1/users/me/wallet", token=t).json["balance_cents"], 500)
        self.assertProblem(GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 0},
                                   token=t, headers={"Idempotency-Key": "k-" + TAG}),
                           400, "amount_cents")


class Products(Problems):
    def test_catalog_admin_and_reads(self):
        a = admin()["token"]
        p = new_product(price=1234, stock=7, name=SQL)
        self.assertEqual(p["name"], SQL)
        r = GW.get("/api/v1/products/" + p["id"])
        self.assertEqual((r.status, r.json["name"], r.json["price_cents"]), (200, SQL, 1234), r)
        r = GW.request("PATCH", "/api/v1/products/" + p["id"],
                       {"description": SQL, "price_cents": 999}, token=a)
        self.assertEqual((r.status, r.json["description"], r.json["price_cents"]),
                         (200, SQL, 999), r)
        r = GW.get("/api/v1/products", query={"q": p["sku"]})
        self.assertEqual([x["id"] for x in r.json["products"]], [p["id"]], r)
        r = GW.request("DELETE", "/api/v1/products/" + p["id"], token=a)
        self.assertEqual((r.status, r.json["active"]), (200, False), r)
        r = GW.get("/api/v1/products", query={"q": p["sku"]})
        self.assertEqual(r.json["products"], [])
        r = GW.get("/api/v1/products", query={"q": p["sku"], "include_inactive": "true"},
                   token=a)
        self.assertEqual(len(r.json["products"]), 1, r)
        self.assertProblem(GW.get("/api/v1/products", query={"include_inactive": "true"},
                                  token=user("alice")["token"]), 403)
        self.assertProblem(GW.get("/api/v1/products/" + PID), 404)
        self.assertProblem(GW.get("/api/v1/products/not-a-uuid"), 404)
        dup = GW.post("/api/v1/products", {"sku": p["sku"], "name": "dup", "price_cents": 1},
                      token=a)
        self.assertProblem(dup, 409)

    def test_pagination(self):
        for _ in range(3):
            new_product()
        r1 = GW.get("/api/v1/products", query={"q": "E2E-" + TAG, "limit": "2"})
        self.assertEqual(len(r1.json["products"]), 2, r1)
        self.assertNotEqual(r1.json["next_page_token"], "")
        r2 = GW.get("/api/v1/products", query={"q": "E2E-" + TAG, "limit": "2",
                                               "page_token": r1.json["next_page_token"]})
        self.assertEqual(r2.status, 200, r2)
        ids1 = {p["id"] for p in r1.json["products"]}
        self.assertFalse(ids1 & {p["id"] for p in r2.json["products"]})


class Orders(Problems):
    def order(self, token, lines, key=None):
        return GW.post("/api/v1/orders", {"lines": lines}, token=token,
                       headers={"Idempotency-Key": key or str(uuid.uuid4())})

    def test_full_purchase_flow(self):
        u = user("heidi")
        t = u["token"]
        p = new_product(price=300, stock=10)
        r = GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 2000}, token=t,
                    headers={"Idempotency-Key": str(uuid.uuid4())})
        self.assertEqual(r.status, 201, r)
        listed = GW.get("/api/v1/products", query={"q": p["sku"]}, token=t)
        self.assertEqual(listed.json["products"][0]["price_cents"], 300)
        key = str(uuid.uuid4())
        r = self.order(t, [{"product_id": p["id"], "quantity": 2}], key)
        self.assertEqual(r.status, 202, r)
        oid = r.json["id"]
        self.assertEqual(r.header("location"), "/api/v1/orders/" + oid)
        self.assertEqual((r.json["status"], r.json["total_cents"]), ("pending", 600))
        self.assertIsNone(r.header("idempotent-replayed"))
        again = self.order(t, [{"product_id": p["id"], "quantity": 2}], key)
        self.assertEqual((again.status, again.json["id"]), (202, oid), again)
        self.assertEqual(again.header("location"), "/api/v1/orders/" + oid)
        self.assertEqual(again.header("idempotent-replayed"), "true")
        # The same order, as it is now (the saga may have moved it on).
        same = ("id", "user_id", "lines", "total_cents", "currency", "created_at")
        self.assertEqual({k: again.json.get(k) for k in same}, {k: r.json.get(k) for k in same})
        reused = self.order(t, [{"product_id": p["id"], "quantity": 3}], key)
        self.assertProblem(reused, 422, "Idempotency-Key", kind="idempotency-key-reused")
        self.assertProblem(GW.post("/api/v1/orders", {"lines": [{"product_id": p["id"],
                                                                 "quantity": 1}]}, token=t),
                           400, "Idempotency-Key")
        r = poll(lambda: GW.get("/api/v1/orders/" + oid, token=t),
                 lambda r: r.json and r.json["status"] != "pending")
        self.assertEqual(r.json["status"], "confirmed", r)
        self.assertIsNone(r.json["cancel_reason"])
        steps = [e["step"] for e in r.json["timeline"]]
        self.assertIn("order_created", steps)
        self.assertIn("order_confirmed", steps)
        w = GW.get("/api/v1/users/me/wallet", token=t).json
        self.assertEqual(w["balance_cents"], 1400)
        lst = GW.get("/api/v1/orders", token=t)
        self.assertIn(oid, [o["id"] for o in lst.json["orders"]])
        c = GW.post("/api/v1/orders/%s/cancel" % oid, token=t)
        self.assertEqual((c.status, c.json["status"], c.json["cancel_reason"]),
                         (200, "cancelled", "user_requested"), c)
        w = poll(lambda: GW.get("/api/v1/users/me/wallet", token=t),
                 lambda r: r.json["balance_cents"] == 2000)
        self.assertEqual(w.json["balance_cents"], 2000, w)
        self.assertIn("refund", [e["kind"] for e in w.json["entries"]])

    def test_orders_of_others_are_404_and_bad_lines_are_field_errors(self):
        a, b = user("ivan"), user("judy")
        p = new_product()
        r = self.order(a["token"], [{"product_id": p["id"], "quantity": 1}])
        self.assertEqual(r.status, 202, r)
        oid = r.json["id"]
        self.assertProblem(GW.get("/api/v1/orders/" + oid, token=b["token"]), 404)
        self.assertProblem(GW.post("/api/v1/orders/%s/cancel" % oid, token=b["token"]), 404)
        self.assertNotIn(oid, [o["id"] for o in GW.get("/api/v1/orders", token=b["token"])
                               .json["orders"]])
        self.assertProblem(GW.get("/api/v1/orders", query={"user_id": a["id"]},
                                  token=b["token"]), 403)
        r = GW.get("/api/v1/orders", query={"user_id": a["id"]}, token=admin()["token"])
        self.assertIn(oid, [o["id"] for o in r.json["orders"]])
        r = self.order(a["token"], [{"product_id": p["id"], "quantity": 0}])
        self.assertProblem(r, 400, "lines[0].quantity")
        r = self.order(a["token"], [{"product_id": PID, "quantity": 1}])
        self.assertProblem(r, 400, "lines[0].product_id")


class NoOracleNoDatabaseText(Problems):
    """Issue 14: one 404 whatever the reason, and page tokens that are MAC'd, checked
    before any query, and never answered with database text."""

    def same_404(self, responses):
        """Every response is the same 404, byte for byte but for the request id."""
        bodies = set()
        for what, r in responses:
            self.assertProblem(r, 404)
            self.assertNotIn("errors", r.json, what)
            rid = r.header("x-request-id")
            bodies.add((r.status, r.header("content-type"),
                        r.raw.replace(rid.encode(), b"<request-id>")))
        self.assertEqual(len(bodies), 1, bodies)
        return responses[0][1].json

    def test_orders_of_others_unknown_and_malformed_ids_answer_the_same_404(self):
        a, b = user("kim"), user("lee")
        oid = GW.post("/api/v1/orders", {"lines": [{"product_id": new_product()["id"],
                                                    "quantity": 1}]}, token=a["token"],
                      headers={"Idempotency-Key": str(uuid.uuid4())}).json["id"]
        ids = (("others", oid), ("others upper-case", oid.upper()),
               ("unknown", str(uuid.uuid4())), ("malformed", "not-a-uuid"), ("sql", "1%27--"))
        answers = [("GET " + w, GW.get("/api/v1/orders/" + i, token=b["token"])) for w, i in ids]
        answers += [("cancel " + w, GW.post("/api/v1/orders/%s/cancel" % i, token=b["token"]))
                    for w, i in ids]
        self.assertEqual(self.same_404(answers)["detail"], "order not found")
        self.assertEqual(GW.get("/api/v1/orders/" + oid, token=a["token"]).status, 200)

    def test_products_unknown_and_malformed_ids_answer_the_same_404(self):
        self.assertEqual(self.same_404([(i, GW.get("/api/v1/products/" + i))
                                        for i in (PID, "not-a-uuid")])["detail"],
                         "product not found")

    def assertBadToken(self, r):
        self.assertProblem(r, 400, "page_token")
        self.assertIsNone(grpc_support.DB_TEXT.search(r.raw.decode()), r)

    def test_forged_and_tampered_page_tokens_are_400_without_database_text(self):
        key = STACK.page_token_key
        u = user("mia")
        pid = new_product()["id"]
        for i in range(3):
            GW.post("/api/v1/orders", {"lines": [{"product_id": pid, "quantity": 1}]},
                    token=u["token"], headers={"Idempotency-Key": str(uuid.uuid4())})
            GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 10 + i},
                    token=u["token"], headers={"Idempotency-Key": str(uuid.uuid4())})
        word = "E2E-" + TAG
        lists = (
            ("/api/v1/orders", {}, u["token"], "order.ListOrders", u["id"], True),
            ("/api/v1/products", {"q": word}, None, "product.ListProducts", "0" + word, True),
            ("/api/v1/users/me/wallet", {}, u["token"], "user.GetWallet", u["id"], False),
        )
        for path, query, token, kind, scope, with_id in lists:
            with self.subTest(path=path):
                r = GW.get(path, query=dict(query, limit="1"), token=token)
                self.assertEqual(r.status, 200, r)
                real = r.json["next_page_token"]
                self.assertNotEqual(real, "")
                self.assertEqual(GW.get(path, query=dict(query, limit="1", page_token=real),
                                        token=token).status, 200)
                row = str(uuid.uuid4()) if with_id else None
                forged = [grpc_support.b64url(("9223372036854775807:%s:%s" % (row, scope))
                                              .encode()),
                          grpc_support.b64url(b"9223372036854775807")]
                forged += list(grpc_support.tampered(real))
                # A genuine MAC under the services' key, fields out of bounds.
                forged += [grpc_support.page_token(kind, scope, pos, row, key=key)
                           for pos in ((1 << 63) - 1, grpc_support.POS_MAX + 1, -1)]
                for bad in forged:
                    self.assertBadToken(GW.get(path, query=dict(query, page_token=bad),
                                               token=token))
                # In bounds, under the key: a cursor like any other.
                good = grpc_support.page_token(kind, scope, 0 if path == "/api/v1/products"
                                               else grpc_support.POS_MAX, row, key=key)
                self.assertEqual(GW.get(path, query=dict(query, page_token=good),
                                        token=token).status, 200)


class Document(Problems):
    def test_problem_types_are_distinct_per_class_and_documented(self):
        doc = GW.get("/api/v1/openapi.json").json
        listed = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        ours = [PROBLEMS + c for c in PROBLEM_TYPES.values()] + [
            PROBLEMS + "idempotency-key-reused"]
        self.assertEqual(sorted(listed), sorted(ours + ["about:blank"]))
        self.assertEqual(len(set(ours)), len(ours))
        # One answer of each class the gateway makes on its own, end to end.
        t = user("alice")["token"]
        self.assertProblem(GW.post("/api/v1/orders", {"lines": 5}, token=t,
                                   headers={"Idempotency-Key": str(uuid.uuid4())}), 400)
        self.assertProblem(GW.get("/api/v1/users/me"), 401)
        self.assertProblem(GW.post("/api/v1/products", {"sku": "x"}, token=t), 403)
        self.assertProblem(GW.get("/api/v1/orders/" + PID, token=t), 404)
        self.assertProblem(GW.request("DELETE", "/api/v1/users/me", token=t), 405)
        self.assertProblem(GW.post("/api/v1/auth/register", {
            "email": email("alice"), "password": PASSWORD, "display_name": "a"}), 409)

    def test_routes_and_openapi_document_agree(self):
        doc = GW.get("/api/v1/openapi.json")
        self.assertEqual(doc.status, 200)
        self.assertEqual(doc.json["openapi"], "3.1.0")
        documented = {(m.upper(), p) for p, item in doc.json["paths"].items()
                      for m in item if m != "parameters"}
        with open(os.path.join(SRC, "routes.c")) as f:
            served = set(re.findall(r'ROUTE\("([A-Z]+)", "([^"]+)"', f.read()))
        self.assertTrue(served)
        # Every GET route answers HEAD too (http.c), and the document says so.
        served |= {("HEAD", p) for m, p in served if m == "GET"}
        self.assertEqual(sorted(served - documented), [], "routes missing from openapi.json")
        self.assertEqual(sorted(documented - served), [], "documented routes that do not exist")
        # And each documented route answers from its handler, not the router's 404/405
        # (with a session of its own: the sweep includes /auth/logout).
        admin()
        token = login("admin")["access_token"]
        for method, path in sorted(documented - {("HEAD", p) for _, p in documented}):
            r = GW.request(method, path.replace("{id}", PID), token=token,
                           headers=headers_for(method, path))
            self.assertNotEqual(r.status, 405, (method, path))
            if r.status == 404:
                self.assertNotEqual(r.json["detail"], "no such resource", (method, path))

    def test_metrics_and_readiness(self):
        r = GW.get("/readyz")
        self.assertEqual(r.json, {"status": "ready", "checks": {"redis": "ok", "user": "ok",
                                                                 "product": "ok", "order": "ok"}})
        m = GW.get("/metrics").raw.decode()
        self.assertIn('http_requests_total{method="GET",route="/readyz",status="200"}', m)
        self.assertIn('http_request_duration_seconds_bucket{route="/readyz"', m)


def bind(stack, gw):
    global STACK, GW
    STACK, GW = stack, gw


def main():
    global SRC
    (SRC,), binaries, unittest_args = split_argv(sys.argv[1:])
    run_unittests(binaries, unittest_args, bind)


if __name__ == "__main__":
    main()
