#!/usr/bin/python3
"""shop.product.v1.ProductService through a real gRPC client (Debian's python3-grpcio).

    test_product_rpc.py PRODUCT_SVC_BINARY

Starts the real product-svc binary against the test stack (PRODUCT_DATABASE_URL,
KAFKA_BROKERS from the environment), calls every RPC with generic unary calls
(messages are encoded and decoded by hand, tests/support/grpc_support.py, so only
grpcio is needed), and checks the answers and status codes the proto comments
promise. Every product the run creates has a sku starting with a random tag, so
reruns and other tests on the same database never meet; the tag's rows are deleted
at the end (psql).
"""
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
import uuid

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
import grpc_support  # noqa: E402
from grpc_support import (HEALTH_CHECK, RFC3339, TIMEOUT_S, RpcTestCase,  # noqa: E402
                          ServiceProcess, decode, f_int, f_str, field_str, psql, violations)

SVC = "/shop.product.v1.ProductService/"
TAG = "PT%s" % uuid.uuid4().hex[:10].upper()
ADMIN = (("x-user-id", str(uuid.uuid4())), ("x-user-role", "admin"))
CUSTOMER = (("x-user-id", str(uuid.uuid4())), ("x-user-role", "customer"))

# --- messages ----------------------------------------------------------------------


def _i(fields, num):
    v = fields.get(num, [0])[0]
    return v - (1 << 64) if v >= 1 << 63 else v


def product(buf):
    f = decode(buf)
    return {"id": field_str(f, 1), "sku": field_str(f, 2), "name": field_str(f, 3),
            "description": field_str(f, 4), "price_cents": _i(f, 5), "currency": field_str(f, 6),
            "active": bool(_i(f, 7)), "created_at": field_str(f, 8),
            "updated_at": field_str(f, 9)}


def stock(buf):
    f = decode(buf)
    return {"product_id": field_str(f, 1), "available": _i(f, 2), "reserved": _i(f, 3),
            "sold": _i(f, 4)}


# --- the service under test ------------------------------------------------------


SERVICE = None
CHANNEL = None


def setUpModule():
    global SERVICE, CHANNEL
    # Started before any channel exists: die_with_parent forks with a preexec_fn.
    SERVICE = ServiceProcess("product-svc", sys.argv[1], "PRODUCT_DATABASE_URL",
                             die_with_parent=True)
    CHANNEL = SERVICE.channel()


def tearDownModule():
    CHANNEL.close()
    try:
        SERVICE.check_stop()
    finally:
        cleanup()


def cleanup():
    """Deletes this run's products (all skus start with TAG)."""
    sql = ("DELETE FROM reservations WHERE product_id IN (SELECT id FROM products WHERE sku LIKE "
           "'{t}%'); DELETE FROM inventory WHERE product_id IN (SELECT id FROM products WHERE sku "
           "LIKE '{t}%'); DELETE FROM products WHERE sku LIKE '{t}%';").format(t=TAG)
    psql(os.environ["PRODUCT_DATABASE_URL"], sql)


def call(method, body, md=None, channel=None):
    return (channel or CHANNEL).unary_unary(SVC + method)(body, timeout=TIMEOUT_S, metadata=md)


SEQ = iter(range(1, 1 << 30))
SEQ_LOCK = threading.Lock()


def new_sku(kind="P"):
    with SEQ_LOCK:
        return "%s-%s%06d" % (TAG, kind, next(SEQ))


def create_req(sku=None, name="Widget", description="A useful widget", price=1999,
               currency=""):
    return (f_str(1, sku if sku is not None else new_sku()) + f_str(2, name) +
            f_str(3, description) + f_int(4, price) + f_str(5, currency))


def create(channel=None, **kw):
    return product(decode(call("CreateProduct", create_req(**kw), ADMIN, channel))[1][0])


def get(pid):
    return product(decode(call("GetProduct", f_str(1, pid)))[1][0])


def list_page(limit=0, token="", q="", include_inactive=False, md=None, channel=None):
    body = f_int(1, limit) + f_str(2, token) + f_str(3, q) + f_int(4, int(include_inactive))
    f = decode(call("ListProducts", body, md, channel))
    return [product(p) for p in f.get(1, [])], field_str(f, 2)


def list_all(q, include_inactive=False, md=None, limit=7):
    out, token = [], ""
    for _ in range(1000):
        page, token = list_page(limit, token, q, include_inactive, md)
        out += page
        if not token:
            return out
    raise AssertionError("pagination did not end")


def update(pid, mask, md=ADMIN, expected=None, **values):
    body = f_str(1, pid) + (f_str(9, expected) if expected is not None else b"")
    nums = {"sku": 2, "name": 3, "description": 4, "currency": 6}
    for k, v in values.items():
        body += f_int(5, v) if k == "price_cents" else f_int(7, int(v)) if k == "active" \
            else f_str(nums[k], v)
    for m in mask:
        body += f_str(8, m)
    return product(decode(call("UpdateProduct", body, md))[1][0])


def stock_call(method, pid, value=None, md=ADMIN):
    body = f_str(1, pid) + (f_int(2, value) if value is not None else b"")
    return stock(decode(call(method, body, md))[1][0])


class TestCreateAndGet(RpcTestCase):
    def test_create_product_returns_an_active_product_with_zero_stock(self):
        sku = new_sku()
        p = create(sku=sku, name="Blue mug", description="Holds coffee", price=1250)
        self.assertTrue(uuid.UUID(p["id"]))
        self.assertEqual((p["sku"], p["name"], p["description"], p["price_cents"]),
                         (sku, "Blue mug", "Holds coffee", 1250))
        self.assertEqual(p["currency"], "USD")  # "" means USD
        self.assertTrue(p["active"])
        self.assertRegex(p["created_at"], RFC3339)
        self.assertEqual(p["created_at"], p["updated_at"])
        self.assertEqual(get(p["id"]), p)
        self.assertEqual(stock_call("GetStock", p["id"]),
                         {"product_id": p["id"], "available": 0, "reserved": 0, "sold": 0})

    def test_create_product_accepts_boundary_values(self):
        p = create(sku=(TAG + "-" + "x" * 64)[:64], name="é" * 200, description="ü\n\t" * 1666,
                   price=1000000000, currency="USD")
        self.assertEqual(len(p["name"]), 200)
        self.assertEqual(p["price_cents"], 1000000000)
        self.assertEqual(create(price=0, description="")["price_cents"], 0)

    def test_create_product_rejects_each_invalid_field(self):
        cases = [
            ("sku", dict(sku="")), ("sku", dict(sku="has space")), ("sku", dict(sku="x" * 65)),
            ("sku", dict(sku=TAG + "-ünicode")), ("name", dict(name="")),
            ("name", dict(name="n" * 201)), ("name", dict(name="tab\there")),
            ("name", dict(name=b"\xff\xfe")), ("description", dict(description="d" * 5001)),
            ("description", dict(description="bell\x07")), ("price_cents", dict(price=-1)),
            ("price_cents", dict(price=1000000001)), ("currency", dict(currency="EUR")),
            ("currency", dict(currency="usd")),
        ]
        for field, kw in cases:
            with self.subTest(field=field, value=kw):
                self.assertInvalid([field], call, "CreateProduct", create_req(**kw), ADMIN)

    def test_create_product_reports_every_invalid_field_at_once(self):
        e = self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, call, "CreateProduct",
                              create_req(sku="bad sku", name="", price=-5, currency="EUR"), ADMIN)
        self.assertEqual(set(violations(e)), {"sku", "name", "price_cents", "currency"})

    def test_create_product_with_a_taken_sku_is_already_exists_even_when_archived(self):
        p = create()
        e = self.assertStatus(grpc.StatusCode.ALREADY_EXISTS, call, "CreateProduct",
                              create_req(sku=p["sku"]), ADMIN)
        self.assertIn("sku", violations(e))
        call("ArchiveProduct", f_str(1, p["id"]), ADMIN)
        e = self.assertStatus(grpc.StatusCode.ALREADY_EXISTS, call, "CreateProduct",
                              create_req(sku=p["sku"]), ADMIN)
        self.assertIn("sku", violations(e))

    def test_get_product_unknown_or_malformed_id_is_not_found(self):
        for pid in (str(uuid.uuid4()), "not-a-uuid", "", "'; DROP TABLE products; --"):
            with self.subTest(pid=pid):
                self.assertStatus(grpc.StatusCode.NOT_FOUND, call, "GetProduct", f_str(1, pid))

    def test_get_product_is_open_to_anyone(self):
        p = create()
        self.assertEqual(product(decode(call("GetProduct", f_str(1, p["id"]), CUSTOMER))[1][0]),
                         p)
        self.assertEqual(get(p["id"].upper())["id"], p["id"])


class TestAdminOnly(RpcTestCase):
    def test_admin_methods_need_a_user_and_the_admin_role(self):
        pid = create()["id"]
        requests = {
            "CreateProduct": create_req(), "UpdateProduct": f_str(1, pid) + f_str(8, "name") +
            f_str(3, "x"), "ArchiveProduct": f_str(1, pid), "SetStock": f_str(1, pid) +
            f_int(2, 5), "AdjustStock": f_str(1, pid) + f_int(2, 5), "GetStock": f_str(1, pid),
            "ListProducts": f_int(4, 1),
        }
        anonymous_admin = (("x-user-role", "admin"),)
        for method, body in requests.items():
            with self.subTest(method=method):
                self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, call, method, body)
                self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, call, method, body,
                                  anonymous_admin)
                self.assertStatus(grpc.StatusCode.PERMISSION_DENIED, call, method, body,
                                  CUSTOMER)
        # Nothing changed.
        self.assertEqual(get(pid)["name"], "Widget")
        self.assertTrue(get(pid)["active"])
        self.assertEqual(stock_call("GetStock", pid)["available"], 0)

    def test_authorization_is_checked_before_validation(self):
        self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, call, "CreateProduct",
                          create_req(sku="bad sku"))
        self.assertStatus(grpc.StatusCode.PERMISSION_DENIED, call, "SetStock",
                          f_str(1, "nope") + f_int(2, -1), CUSTOMER)


class TestBatchGet(RpcTestCase):
    def test_batch_get_returns_known_products_once_and_lists_the_rest(self):
        a, b = create(), create()
        call("ArchiveProduct", f_str(1, b["id"]), ADMIN)
        missing = str(uuid.uuid4())
        ids = [a["id"], b["id"], a["id"], a["id"].upper(), missing, "junk", missing, "junk"]
        f = decode(call("BatchGetProducts", b"".join(f_str(1, i) for i in ids), CUSTOMER))
        got = {p["id"]: p for p in map(product, f.get(1, []))}
        self.assertEqual(len(f.get(1, [])), 2)
        self.assertEqual(set(got), {a["id"], b["id"]})
        self.assertTrue(got[a["id"]]["active"])
        self.assertFalse(got[b["id"]]["active"])  # archived products are returned too
        self.assertEqual(sorted(x.decode() for x in f.get(2, [])), sorted([missing, "junk"]))

    def test_batch_get_needs_1_to_100_ids(self):
        self.assertInvalid(["product_ids"], call, "BatchGetProducts", b"")
        many = b"".join(f_str(1, str(uuid.uuid4())) for _ in range(101))
        self.assertInvalid(["product_ids"], call, "BatchGetProducts", many)
        hundred = [str(uuid.uuid4()) for _ in range(100)]
        f = decode(call("BatchGetProducts", b"".join(f_str(1, i) for i in hundred)))
        self.assertEqual(len(f.get(2, [])), 100)


class TestList(RpcTestCase):
    def test_list_filters_on_sku_name_and_description_case_insensitively(self):
        word = uuid.uuid4().hex[:12]
        by_sku = create(sku=new_sku("Q" + word))
        by_name = create(name="The %s lamp" % word.upper())
        by_desc = create(description="made of %s wood" % word)
        create(name="unrelated")
        found = {p["id"] for p in list_all(word)}
        self.assertEqual(found, {by_sku["id"], by_name["id"], by_desc["id"]})
        self.assertEqual({p["id"] for p in list_all(word.upper())}, found)

    def test_list_filter_takes_like_wildcards_literally(self):
        tag = uuid.uuid4().hex[:10]
        pct = create(name="%s 100%% cotton" % tag)
        create(name="%s 100 cotton" % tag)
        self.assertEqual([p["id"] for p in list_all(tag + " 100%")], [pct["id"]])
        self.assertEqual(list_all(tag + "_"), [])

    def test_list_limit_0_means_20_and_must_be_0_to_100(self):
        word = uuid.uuid4().hex[:12]
        for _ in range(21):
            create(name="bulk " + word)
        page, token = list_page(0, q=word)
        self.assertEqual(len(page), 20)
        self.assertTrue(token)
        page, token = list_page(100, q=word)
        self.assertEqual((len(page), token), (21, ""))
        for limit in (-1, 101, 1 << 20):
            with self.subTest(limit=limit):
                self.assertInvalid(["limit"], list_page, limit, q=word)

    def test_list_rejects_a_bad_page_token(self):
        word = uuid.uuid4().hex[:12]
        for _ in range(3):
            create(name="tok " + word)
        _, token = list_page(1, q=word)
        self.assertTrue(token)
        bad = ["x", "!!!!", token + "A", token[:-1], token.replace(token[3], "+"),
               "MTIzOm5vdC1hLXV1aWQ6MDAwMDAwMDA", "A" * 200]
        for t in bad:
            with self.subTest(token=t):
                self.assertInvalid(["page_token"], list_page, 1, t, word)
        # A token belongs to its query.
        self.assertInvalid(["page_token"], list_page, 1, token, word + "x")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, list_page, 1, token, word, True,
                          ADMIN)

    def test_list_bounds_the_text_filter(self):
        self.assertInvalid(["q"], list_page, 0, "", "q" * 201)
        self.assertEqual(list_page(0, "", "q" * 200)[0], [])

    def test_archive_hides_a_product_from_the_list_but_not_from_get(self):
        word = uuid.uuid4().hex[:12]
        keep, gone = create(name="arch " + word), create(name="arch " + word)
        a1 = product(decode(call("ArchiveProduct", f_str(1, gone["id"]), ADMIN))[1][0])
        self.assertFalse(a1["active"])
        self.assertGreater(a1["updated_at"], gone["updated_at"])
        self.assertEqual([p["id"] for p in list_all(word)], [keep["id"]])
        self.assertEqual([p["id"] for p in list_all(word, True, ADMIN)],
                         [keep["id"], gone["id"]])
        self.assertFalse(get(gone["id"])["active"])
        # Idempotent: archiving again succeeds and changes nothing.
        a2 = product(decode(call("ArchiveProduct", f_str(1, gone["id"]), ADMIN))[1][0])
        self.assertEqual(a2, a1)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, call, "ArchiveProduct",
                          f_str(1, str(uuid.uuid4())), ADMIN)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, call, "ArchiveProduct", f_str(1, "x"), ADMIN)

    def test_list_is_ordered_by_created_at_then_id(self):
        word = uuid.uuid4().hex[:12]
        made = [create(name="ord " + word)["id"] for _ in range(9)]
        listed = list_all(word, limit=2)
        self.assertEqual([p["id"] for p in listed], made)
        keys = [(p["created_at"], p["id"]) for p in listed]
        self.assertEqual(keys, sorted(keys))

    def test_pagination_visits_every_product_exactly_once_while_products_are_added(self):
        word = uuid.uuid4().hex[:12]
        before = {create(name="page %s %d" % (word, i))["id"] for i in range(60)}
        added, stop, errors = [], threading.Event(), []

        def writer():
            ch = SERVICE.channel()
            try:
                while not stop.is_set() and len(added) < 200:
                    added.append(create(channel=ch, name="page %s new" % word)["id"])
            except Exception as e:  # reported by the main thread
                errors.append(e)
            finally:
                ch.close()

        threads = [threading.Thread(target=writer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            seen, token, pages = [], "", 0
            while pages == 0 or token:
                page, token = list_page(3, token, word)
                seen += [p["id"] for p in page]
                pages += 1
                time.sleep(0.01)  # let the writers commit between pages
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertGreater(len(added), 0, "no product was added while paginating")
        self.assertEqual(len(seen), len(set(seen)), "a product was listed twice")
        self.assertEqual(before - set(seen), set(), "a pre-existing product was skipped")
        self.assertEqual(set(seen) - before - set(added), set())


def old_token(us, pid, q, include_inactive=False):
    """A token of the old, unMAC'd format: base64url of "<µs>:<id>:<FNV-1a of the
    filter>", which product-svc used to take as it came (the issue's 2^63-1 answered
    400 "postgresql 22008: interval out of range")."""
    h = 2166136261
    for b in (b"1" if include_inactive else b"0") + q.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return grpc_support.b64url(("%s:%s:%08x" % (us, pid, h)).encode())


class TestPageTokens(RpcTestCase):
    """Page tokens are MAC'd (common/page_token.h): forged and tampered ones are
    INVALID_ARGUMENT on page_token before any query, with no database text."""

    KIND = "product.ListProducts"

    def assertBadToken(self, token, q, channel=None, why="is not a valid page token"):
        e = self.assertInvalid(["page_token"], list_page, 2, token, q, channel=channel)
        self.assertEqual(e.details(), "invalid request")
        self.assertEqual(violations(e), {"page_token": why})
        grpc_support.assert_no_db_text(self, e)

    def test_forged_and_tampered_tokens_are_invalid_without_database_text(self):
        logged = len(SERVICE.logs())
        word = uuid.uuid4().hex[:12]
        made = [create(name="forge " + word) for _ in range(3)]
        _, token = list_page(2, q=word)
        self.assertTrue(token)
        for us in ("9223372036854775807", "-1", "1714564800123456"):
            with self.subTest(us=us):
                self.assertBadToken(old_token(us, made[0]["id"], word), word)
        for i, bad in enumerate(grpc_support.tampered(token)):
            with self.subTest(byte=i):
                self.assertBadToken(bad, word)
        self.assertBadToken(grpc_support.page_token(self.KIND, "0" + word, 1, made[0]["id"]),
                            word)
        self.assertNotIn('"msg":"rpc failed"', SERVICE.logs()[logged:])
        self.assertBadToken(token, word + "x", why="was issued for another q or include_inactive")
        self.assertEqual([p["id"] for p in list_page(2, token, word)[0]], [made[2]["id"]])

    def test_paging_across_instances_sharing_the_key_and_bounds_under_a_genuine_mac(self):
        env = dict(PAGE_TOKEN_KEY=grpc_support.PAGE_TOKEN_KEY,
                   ready=grpc_support.consumer_assigned)
        procs, channels = [], []
        try:
            for name in ("product-svc-a", "product-svc-b"):
                procs.append(ServiceProcess(name, sys.argv[1], "PRODUCT_DATABASE_URL", **env))
                channels.append(procs[-1].channel())
            word = uuid.uuid4().hex[:12]
            made = [create(name="shared " + word)["id"] for _ in range(5)]
            seen, token = [], ""
            for i in range(3):  # a, b, a
                page, token = list_page(2, token, word, channel=channels[i % 2])
                seen += [p["id"] for p in page]
            self.assertEqual((seen, token), (made, ""))
            # The main instance has a key of its own (random): it refuses the token.
            _, first = list_page(2, q=word, channel=channels[0])
            self.assertBadToken(first, word)
            self.assertIn("PAGE_TOKEN_KEY is not set", SERVICE.logs())
            # The shared key, a genuine MAC, fields out of bounds: refused before SQL.
            for pos in ((1 << 63) - 1, grpc_support.POS_MAX + 1, -1):
                with self.subTest(pos=pos):
                    self.assertBadToken(grpc_support.page_token(self.KIND, "0" + word, pos,
                                                                made[0]), word, channels[1])
            self.assertBadToken(grpc_support.page_token(self.KIND, "0" + word, 1, made[0],
                                                        version=2), word, channels[1])
            page, _ = list_page(10, grpc_support.page_token(self.KIND, "0" + word, 0, made[0]),
                                word, channel=channels[1])
            self.assertEqual([p["id"] for p in page], made)
            for x in procs:
                self.assertNotIn('"msg":"rpc failed"', x.logs())
        finally:
            for ch in channels:
                ch.close()
            stopped = []
            for x in procs:
                try:
                    x.check_stop()
                except AssertionError as e:
                    stopped.append(str(e))
            self.assertEqual(stopped, [])

    def test_a_bad_page_token_key_stops_the_service_naming_the_variable(self):
        env = dict(os.environ, PAGE_TOKEN_KEY="ab" * 31, GRPC_ADDR="127.0.0.1:0",
                   ADMIN_ADDR="127.0.0.1:0", DATABASE_URL=os.environ["PRODUCT_DATABASE_URL"])
        r = subprocess.run([sys.argv[1]], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("PAGE_TOKEN_KEY", r.stderr)
        self.assertNotIn("ab" * 31, r.stderr + r.stdout)


class TestNotFound(RpcTestCase):
    def test_unknown_and_malformed_ids_answer_alike(self):
        answers = set()
        for method, body in (("GetProduct", lambda pid: f_str(1, pid)),
                             ("GetStock", lambda pid: f_str(1, pid)),
                             ("SetStock", lambda pid: f_str(1, pid) + f_int(2, 1))):
            for pid in (str(uuid.uuid4()), "not-a-uuid", ""):
                md = None if method == "GetProduct" else ADMIN
                e = self.assertStatus(grpc.StatusCode.NOT_FOUND, call, method, body(pid), md)
                answers.add((e.code(), e.details(),
                             tuple(sorted(k for k, _ in e.trailing_metadata() or ()))))
        self.assertEqual(answers, {(grpc.StatusCode.NOT_FOUND, "product not found", ())})


class TestUpdate(RpcTestCase):
    def test_update_changes_only_the_fields_in_the_mask(self):
        p = create(name="Old", description="old text", price=100)
        u = update(p["id"], ["name"], name="New", description="ignored", price_cents=5)
        self.assertEqual((u["name"], u["description"], u["price_cents"], u["sku"]),
                         ("New", "old text", 100, p["sku"]))
        self.assertEqual(u["created_at"], p["created_at"])
        self.assertGreater(u["updated_at"], p["updated_at"])
        sku = new_sku()
        u = update(p["id"], ["sku", "description", "price_cents", "currency"], sku=sku,
                   description="", price_cents=0, currency="")
        self.assertEqual((u["sku"], u["description"], u["price_cents"], u["currency"]),
                         (sku, "", 0, "USD"))
        self.assertEqual(get(p["id"]), u)

    def test_update_active_archives_and_unarchives(self):
        p = create()
        self.assertFalse(update(p["id"], ["active"], active=False)["active"])
        self.assertTrue(update(p["id"], ["active"], active=True)["active"])
        call("ArchiveProduct", f_str(1, p["id"]), ADMIN)
        self.assertTrue(update(p["id"], ["active"], active=True)["active"])

    def test_update_rejects_a_bad_mask_and_bad_values(self):
        pid = create()["id"]
        self.assertInvalid(["update_mask"], update, pid, [], name="x")
        self.assertInvalid(["update_mask"], update, pid, ["name", "colour"], name="x")
        self.assertInvalid(["update_mask"], update, pid, ["id"])
        for field, value in (("sku", "no spaces"), ("name", ""), ("description", "d" * 5001),
                             ("price_cents", -1), ("currency", "GBP")):
            with self.subTest(field=field):
                self.assertInvalid([field], update, pid, [field], **{field: value})
        # Values outside the mask are not validated.
        self.assertEqual(update(pid, ["name"], name="ok", sku="bad sku")["name"], "ok")

    def test_update_to_a_taken_sku_is_already_exists(self):
        a, b = create(), create()
        e = self.assertStatus(grpc.StatusCode.ALREADY_EXISTS, update, b["id"], ["sku"],
                              sku=a["sku"])
        self.assertIn("sku", violations(e))
        self.assertEqual(get(b["id"])["sku"], b["sku"])
        self.assertEqual(update(a["id"], ["sku"], sku=a["sku"])["sku"], a["sku"])

    def test_update_unknown_product_is_not_found(self):
        for pid in (str(uuid.uuid4()), "nope"):
            with self.subTest(pid=pid):
                self.assertStatus(grpc.StatusCode.NOT_FOUND, update, pid, ["name"], name="x")


class TestExpectedVersion(RpcTestCase):
    """expected_updated_at: the gateway's If-Match, checked inside the UPDATE."""

    def test_update_with_the_current_version_applies_and_a_stale_one_fails(self):
        p = create(name="v1")
        u = update(p["id"], ["name"], expected=p["updated_at"], name="v2")
        self.assertEqual(u["name"], "v2")
        self.assertGreater(u["updated_at"], p["updated_at"])
        e = self.assertStatus(grpc.StatusCode.FAILED_PRECONDITION, update, p["id"], ["name"],
                              expected=p["updated_at"], name="v3")
        self.assertIn("If-Match", e.details())
        self.assertEqual(get(p["id"]), u)
        # Any spelling of the same instant matches; "" is unconditional.
        same = u["updated_at"].replace("Z", "+00:00")
        self.assertEqual(update(p["id"], ["name"], expected=same, name="v4")["name"], "v4")
        self.assertEqual(update(p["id"], ["name"], expected="", name="v5")["name"], "v5")

    def test_racing_writers_from_one_version_one_wins(self):
        p = create(name="start")
        results = []

        def writer(i):
            try:
                results.append(update(p["id"], ["name"], expected=p["updated_at"],
                                      name="w%d" % i)["name"])
            except grpc.RpcError as e:
                results.append(e.code())

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wins = [r for r in results if isinstance(r, str)]
        self.assertEqual(len(wins), 1, results)
        self.assertEqual(results.count(grpc.StatusCode.FAILED_PRECONDITION), 5, results)
        self.assertEqual(get(p["id"])["name"], wins[0])

    def test_unknown_product_is_not_found_and_a_bad_version_invalid(self):
        self.assertStatus(grpc.StatusCode.NOT_FOUND, update, str(uuid.uuid4()), ["name"],
                          expected="2026-01-01T00:00:00Z", name="x")
        pid = create()["id"]
        self.assertInvalid(["expected_updated_at"], update, pid, ["name"], expected="yesterday",
                           name="x")

    def test_archive_with_an_expected_version(self):
        p = create()
        u = update(p["id"], ["name"], name="moved")
        self.assertStatus(grpc.StatusCode.FAILED_PRECONDITION, call, "ArchiveProduct",
                          f_str(1, p["id"]) + f_str(2, p["updated_at"]), ADMIN)
        self.assertTrue(get(p["id"])["active"])
        a = product(decode(call("ArchiveProduct", f_str(1, p["id"]) + f_str(2, u["updated_at"]),
                                ADMIN))[1][0])
        self.assertFalse(a["active"])


class TestStock(RpcTestCase):
    def test_set_stock_sets_available(self):
        pid = create()["id"]
        self.assertEqual(stock_call("SetStock", pid, 7),
                         {"product_id": pid, "available": 7, "reserved": 0, "sold": 0})
        self.assertEqual(stock_call("SetStock", pid, 0)["available"], 0)
        self.assertEqual(stock_call("SetStock", pid, 12)["available"], 12)
        self.assertEqual(stock_call("GetStock", pid)["available"], 12)

    def test_set_stock_rejects_negative_and_unknown(self):
        pid = create()["id"]
        self.assertInvalid(["available"], stock_call, "SetStock", pid, -1)
        self.assertInvalid(["available"], stock_call, "SetStock", pid, 10**12 + 1)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, stock_call, "SetStock", str(uuid.uuid4()), 1)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, stock_call, "SetStock", "x", 1)
        self.assertEqual(stock_call("GetStock", pid)["available"], 0)

    def test_adjust_stock_adds_and_removes(self):
        pid = create()["id"]
        self.assertEqual(stock_call("AdjustStock", pid, 10)["available"], 10)
        self.assertEqual(stock_call("AdjustStock", pid, -4)["available"], 6)
        self.assertEqual(stock_call("AdjustStock", pid, -6)["available"], 0)

    def test_adjust_stock_below_zero_is_failed_precondition_and_changes_nothing(self):
        pid = create()["id"]
        stock_call("SetStock", pid, 3)
        e = self.assertStatus(grpc.StatusCode.FAILED_PRECONDITION, stock_call, "AdjustStock",
                              pid, -4)
        self.assertIn("delta", violations(e))
        self.assertEqual(stock_call("GetStock", pid)["available"], 3)

    def test_adjust_stock_rejects_zero_and_unknown(self):
        pid = create()["id"]
        self.assertInvalid(["delta"], stock_call, "AdjustStock", pid, 0)
        self.assertInvalid(["delta"], stock_call, "AdjustStock", pid, -(10**12) - 1)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, stock_call, "AdjustStock",
                          str(uuid.uuid4()), 1)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, stock_call, "GetStock", str(uuid.uuid4()))
        self.assertStatus(grpc.StatusCode.NOT_FOUND, stock_call, "GetStock", "")

    def test_concurrent_adjustments_are_all_applied(self):
        pid = create()["id"]

        def add():
            ch = SERVICE.channel()
            for _ in range(25):
                ch.unary_unary(SVC + "AdjustStock")(f_str(1, pid) + f_int(2, 1),
                                                    timeout=TIMEOUT_S, metadata=ADMIN)
            ch.close()

        threads = [threading.Thread(target=add) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(stock_call("GetStock", pid)["available"], 100)


class TestOperation(RpcTestCase):
    def test_health_check_answers_serving(self):
        resp = CHANNEL.unary_unary(HEALTH_CHECK)(b"", timeout=TIMEOUT_S)
        self.assertEqual(resp, b"\x08\x01")

    def test_admin_http_serves_health_and_product_metrics(self):
        base = "http://127.0.0.1:%d" % SERVICE.admin_port
        with urllib.request.urlopen(base + "/healthz", timeout=TIMEOUT_S) as r:
            self.assertEqual(r.status, 200)
        with urllib.request.urlopen(base + "/readyz", timeout=TIMEOUT_S) as r:
            self.assertEqual(r.status, 200)
        get_pid = create()["id"]
        get(get_pid)
        with urllib.request.urlopen(base + "/metrics", timeout=TIMEOUT_S) as r:
            text = r.read().decode()
        self.assertIn("shop.product.v1.ProductService/GetProduct", text)
        self.assertIn("rpc_server_requests_total", text)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_product_rpc.py PRODUCT_SVC_BINARY")
    unittest.main(argv=sys.argv[:1], verbosity=2)
