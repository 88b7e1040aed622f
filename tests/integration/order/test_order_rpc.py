#!/usr/bin/python3
"""shop.order.v1.OrderService through a real gRPC client (Debian's python3-grpcio).

    test_order_rpc.py ORDER_SVC PRODUCT_SVC USER_SVC DESCRIPTOR_SET

Starts the real order-svc and product-svc binaries against the test stack
(ORDER_/PRODUCT_/USER_DATABASE_URL, KAFKA_BROKERS from the environment) — user-svc
only for the tests that need orders to complete — and calls every RPC with generic
unary calls whose messages come from python3-protobuf and the FileDescriptorSet
protoc-c wrote from proto/ at build time (so requests and answers are encoded by a
protobuf library no one here wrote). It checks the answers and status codes the
proto comments promise. Products carry a random sku tag and users are fresh UUIDs
(or fresh emails), so reruns and other tests on the same databases never meet; this
run's rows are deleted at the end (psql).
"""
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import uuid

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
import grpc_support  # noqa: E402
import kafka_env  # noqa: E402
from grpc_support import (RFC3339, TIMEOUT_S, RpcTestCase, ServiceProcess,  # noqa: E402
                          load_messages, unary)

ORDER = "/shop.order.v1.OrderService/"
PRODUCT = "/shop.product.v1.ProductService/"
USER = "/shop.user.v1.UserService/"
TAG = "OT%s" % uuid.uuid4().hex[:10].upper()
ADMIN = (("x-user-id", str(uuid.uuid4())), ("x-user-role", "admin"))

PENDING, CONFIRMED, CANCELLED = 1, 2, 3
OUT_OF_STOCK, USER_REQUESTED = 1, 4

BINARIES = {}
DESCRIPTORS = None
M = {}  # full message name -> class
PRODUCT_SVC = ORDER_SVC = None
CHANNEL = None
USERS = []  # every user id this run used (cleanup)
ORDERS = []  # every order id this run made (cleanup)


def msg(type_name, **fields):
    return M[type_name](**fields)


# --- the services under test ------------------------------------------------------


class Service(ServiceProcess):
    """BINARIES[name] as a child process (see ServiceProcess), started once its saga
    consumer holds partitions."""

    def __init__(self, name, db_env, **env):
        super().__init__(name, BINARIES[name], db_env, ready=self._partitions_assigned, **env)

    @staticmethod
    def _partitions_assigned(logs):
        return re.search(r'"msg":"kafka partitions assigned".*"partitions":[1-9]', logs)

    def partitions(self):
        """Partitions its saga consumer holds now (assigned minus revoked, from its log)."""
        n = 0
        for m in re.finditer(r'"msg":"kafka partitions (assigned|revoked)".*?"partitions":(\d+)',
                             self.logs()):
            n += int(m.group(2)) if m.group(1) == "assigned" else -int(m.group(2))
        return n

    def wait_alone(self, topics, timeout_s=120):
        """Waits until it holds every partition of its `topics`: no other member of its
        consumer group (another test's instance, or one that died without leaving and
        whose partitions stay unserved until its session times out) holds events of
        this test's orders back."""
        want = topics * topic_partitions()
        end = time.time() + timeout_s
        while self.partitions() != want:
            if time.time() > end:
                raise AssertionError("%s holds %d of %d partitions: another member is in its"
                                     " group" % (self.name, self.partitions(), want))
            time.sleep(0.2)


def topic_partitions():
    """Partitions of each saga topic, from the broker's metadata (kcat)."""
    out = subprocess.run(kafka_env.admin_kcat() + ["-L", "-t", "order.events", "-m", "10"],
                         check=True, capture_output=True, text=True).stdout
    return int(re.search(r'topic "order\.events" with (\d+) partitions', out).group(1))


def wait_saga_ready(*others):
    """The services a saga runs through hold all their partitions."""
    PRODUCT_SVC.wait_alone(1)  # order.events
    ORDER_SVC.wait_alone(2)  # inventory.events, payment.events
    for svc in others:
        svc.wait_alone(2)  # user-svc: inventory.events, order.events


def setUpModule():
    global M, PRODUCT_SVC, ORDER_SVC, CHANNEL
    M = load_messages(DESCRIPTORS)
    PRODUCT_SVC = Service("product-svc", "PRODUCT_DATABASE_URL")
    ORDER_SVC = Service("order-svc", "ORDER_DATABASE_URL",
                        PRODUCT_ADDR="127.0.0.1:%d" % PRODUCT_SVC.port)
    CHANNEL = ORDER_SVC.channel()


def tearDownModule():
    CHANNEL.close()
    try:
        ORDER_SVC.check_stop()
        PRODUCT_SVC.check_stop()
    finally:
        cleanup()


def psql(env, sql):
    return grpc_support.psql(os.environ[env], sql)


def cleanup():
    """Deletes this run's orders, products and users (ids are UUIDs, skus carry TAG)."""
    users = "'{%s}'::uuid[]" % ",".join(USERS)
    psql("ORDER_DATABASE_URL", ";".join(
        "DELETE FROM %s WHERE %s IN (SELECT id FROM orders WHERE user_id = ANY(%s))" % (t, c, users)
        for t, c in (("order_timeline", "order_id"), ("order_lines", "order_id"),
                     ("idempotency_keys", "order_id"))) +
        "; DELETE FROM orders WHERE user_id = ANY(%s)" % users)
    products = "(SELECT id FROM products WHERE sku LIKE '%s%%')" % TAG
    psql("PRODUCT_DATABASE_URL",
         "DELETE FROM reservations WHERE product_id IN {p}; DELETE FROM order_states WHERE"
         " order_id = ANY('{{{o}}}'::uuid[]); DELETE FROM inventory WHERE product_id IN {p};"
         " DELETE FROM products WHERE sku LIKE '{t}%'".format(p=products, o=",".join(ORDERS),
                                                            t=TAG))
    psql("USER_DATABASE_URL",
         "DELETE FROM order_payments WHERE user_id = ANY({u}); DELETE FROM ledger WHERE user_id"
         " = ANY({u}); DELETE FROM wallets WHERE user_id = ANY({u}); DELETE FROM preferences"
         " WHERE user_id = ANY({u}); DELETE FROM profiles WHERE user_id = ANY({u}); DELETE FROM"
         " users WHERE id = ANY({u})".format(u=users))


# --- calls -------------------------------------------------------------------------


def who(user, role="customer"):
    return (("x-user-id", user), ("x-user-role", role))


def call(path, request, response, md, channel=None, timeout=TIMEOUT_S):
    rpc = unary(channel or CHANNEL, path, M[response])
    return rpc(request, timeout=timeout, metadata=md)


def order_call(method, md, channel=None, **fields):
    return call(ORDER + method, msg("shop.order.v1.%sRequest" % method, **fields),
                "shop.order.v1.%sResponse" % method, md, channel)


def violations(err):
    """The field -> description map of the grpc-status-details-bin trailer's
    google.rpc.BadRequest (python3-protobuf)."""
    return grpc_support.violations(err, M)


def new_user():
    user = str(uuid.uuid4())
    USERS.append(user)
    return user


SEQ = iter(range(1, 1 << 30))
SEQ_LOCK = threading.Lock()


def product(price=250, stock=100, active=True):
    """A product made through product-svc's admin API; its id."""
    with SEQ_LOCK:
        sku = "%s-%06d" % (TAG, next(SEQ))
    channel = PRODUCT_SVC.channel()
    try:
        p = call(PRODUCT + "CreateProduct",
                 msg("shop.product.v1.CreateProductRequest", sku=sku, name="order test product",
                     price_cents=price), "shop.product.v1.CreateProductResponse", ADMIN,
                 channel).product
        call(PRODUCT + "SetStock", msg("shop.product.v1.SetStockRequest", product_id=p.id,
                                       available=stock),
             "shop.product.v1.SetStockResponse", ADMIN, channel)
        if not active:
            call(PRODUCT + "ArchiveProduct", msg("shop.product.v1.ArchiveProductRequest",
                                                 product_id=p.id),
                 "shop.product.v1.ArchiveProductResponse", ADMIN, channel)
        return p.id
    finally:
        channel.close()


def lines(*pairs):
    return [msg("shop.order.v1.RequestedLine", product_id=p, quantity=q) for p, q in pairs]


def create(user, line_pairs, key=None, md=None, channel=None):
    resp = order_call("CreateOrder", md or who(user), channel, user_id=user,
                      idempotency_key=key or str(uuid.uuid4()), lines=lines(*line_pairs))
    ORDERS.append(resp.order.id)
    return resp


def get(user, order_id, role="customer"):
    return order_call("GetOrder", who(user, role), order_id=order_id).order


def wait_no_user_svc(timeout_s=120):
    """Waits until no user-svc (another test's, on the shared stack) is connected to the
    user database: it would pay the orders that must stay PENDING here."""
    end = time.time() + timeout_s
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
           " AND application_name = 'user-svc'")
    while psql("USER_DATABASE_URL", sql) != "0":
        if time.time() > end:
            raise AssertionError("a user-svc stays connected to the user database")
        time.sleep(0.2)


def wait_order(user, order_id, done, timeout_s=30):
    end = time.time() + timeout_s
    while True:
        o = get(user, order_id)
        if done(o) or time.time() > end:
            return o
        time.sleep(0.05)


class Base(RpcTestCase):
    violations = staticmethod(violations)  # assertInvalid decodes with python3-protobuf too


# --- the tests ---------------------------------------------------------------------


class TestIdentity(Base):
    def test_every_method_needs_x_user_id(self):
        user = new_user()
        cases = [("CreateOrder", dict(user_id=user, idempotency_key="k",
                                      lines=lines((str(uuid.uuid4()), 1)))),
                 ("GetOrder", dict(order_id=str(uuid.uuid4()))),
                 ("ListOrders", dict(user_id=user)),
                 ("CancelOrder", dict(order_id=str(uuid.uuid4())))]
        for method, fields in cases:
            with self.subTest(method=method):
                self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, order_call, method, None,
                                  **fields)
                self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, order_call, method,
                                  (("x-user-role", "admin"),), **fields)

    def test_create_order_for_another_user_is_permission_denied_even_for_admins(self):
        user, other, p = new_user(), new_user(), product()
        for role in ("customer", "admin"):
            with self.subTest(role=role):
                self.assertStatus(grpc.StatusCode.PERMISSION_DENIED, create, other, [(p, 1)],
                                  md=who(user, role))


class TestCreateOrder(Base):
    def test_create_order_prices_lines_and_answers_the_pending_order(self):
        user, p1, p2 = new_user(), product(price=250), product(price=1999)
        resp = create(user, [(p2, 3), (p1, 1)])
        o = resp.order
        self.assertFalse(resp.replayed)
        self.assertTrue(uuid.UUID(o.id))
        self.assertEqual(o.user_id, user)
        self.assertEqual(o.status, PENDING)
        self.assertEqual(o.cancel_reason, 0)
        self.assertEqual([(l.product_id, l.quantity, l.unit_price_cents, l.line_total_cents)
                          for l in o.lines], [(p2, 3, 1999, 5997), (p1, 1, 250, 250)])
        self.assertEqual(o.total_cents, 6247)
        self.assertEqual(o.currency, "USD")
        self.assertRegex(o.created_at, RFC3339)
        self.assertEqual(o.created_at, o.updated_at)
        self.assertEqual([(t.step, t.status, t.at) for t in o.timeline],
                         [("order_created", PENDING, o.created_at)])
        stored = get(user, o.id)
        self.assertEqual(stored.lines, o.lines)
        self.assertEqual(stored.total_cents, o.total_cents)
        self.assertEqual(stored.created_at, o.created_at)

    def test_create_order_accepts_upper_case_ids_and_stores_them_lower_case(self):
        user, p = new_user(), product()
        resp = order_call("CreateOrder", who(user.upper()), user_id=user.upper(),
                          idempotency_key="upper", lines=lines((p.upper(), 2)))
        ORDERS.append(resp.order.id)
        self.assertEqual(resp.order.user_id, user)
        self.assertEqual(resp.order.lines[0].product_id, p)

    def test_create_order_accepts_the_boundaries(self):
        user = new_user()
        many = [(product(price=1), 1) for _ in range(100)]
        o = create(user, many, key="k" * 128).order
        self.assertEqual(len(o.lines), 100)
        self.assertEqual(o.total_cents, 100)
        o = create(user, [(product(price=1000000000, stock=5000), 1000)], key=" ~").order
        self.assertEqual(o.total_cents, 1000 * 1000000000)

    def test_create_order_needs_1_to_100_lines(self):
        user, p = new_user(), product()
        self.assertInvalid(["lines"], create, user, [])
        self.assertInvalid(["lines"], create, user, [(p, 1)] * 101)

    def test_create_order_reports_every_bad_line_at_once(self):
        user, p1, p2 = new_user(), product(), product()
        e = self.assertInvalid(
            ["lines[0].quantity", "lines[1].quantity", "lines[2].product_id",
             "lines[3].product_id", "lines[4].quantity"],
            create, user, [(p1, 0), (p2, 1001), ("not-a-uuid", 1), (p1, 1), (str(uuid.uuid4()), -5)])
        self.assertIn("1..1000", violations(e)["lines[0].quantity"])
        self.assertIn("twice", violations(e)["lines[3].product_id"])

    def test_create_order_rejects_bad_idempotency_keys(self):
        user, p = new_user(), product()
        for key in ("k" * 129, "caf\u00e9", "tab\there", "new\nline"):
            with self.subTest(key=key):
                self.assertInvalid(["idempotency_key"], create, user, [(p, 1)], key=key)
        self.assertInvalid(["idempotency_key"], order_call, "CreateOrder", who(user),
                           user_id=user, idempotency_key="", lines=lines((p, 1)))

    def test_create_order_rejects_unknown_and_archived_products_per_line(self):
        user, ok, archived = new_user(), product(), product(active=False)
        e = self.assertInvalid(["lines[1].product_id", "lines[2].product_id"], create, user,
                               [(ok, 1), (str(uuid.uuid4()), 2), (archived, 1)])
        self.assertIn("unknown", violations(e)["lines[1].product_id"])
        self.assertIn("archived", violations(e)["lines[2].product_id"])
        self.assertEqual(len(order_call("ListOrders", who(user), user_id=user).orders), 0)

    def test_same_key_and_lines_replay_the_order(self):
        user, p1, p2 = new_user(), product(), product()
        first = create(user, [(p1, 1), (p2, 2)], key="checkout-1")
        again = create(user, [(p1, 1), (p2, 2)], key="checkout-1")
        self.assertTrue(again.replayed)
        self.assertEqual(again.order.id, first.order.id)
        self.assertEqual(again.order.created_at, first.order.created_at)
        # The same lines in another order are the same request.
        swapped = create(user, [(p2, 2), (p1, 1)], key="checkout-1")
        self.assertTrue(swapped.replayed)
        self.assertEqual(swapped.order.id, first.order.id)
        self.assertEqual(len(order_call("ListOrders", who(user), user_id=user).orders), 1)

    def test_same_key_with_other_lines_is_already_exists(self):
        user, p = new_user(), product()
        create(user, [(p, 1)], key="checkout-2")
        e = self.assertStatus(grpc.StatusCode.ALREADY_EXISTS, create, user, [(p, 2)],
                              key="checkout-2")
        self.assertEqual(list(violations(e)), ["idempotency_key"])

    def test_keys_are_scoped_per_user(self):
        p, a, b = product(), new_user(), new_user()
        first = create(a, [(p, 1)], key="shared-key")
        other = create(b, [(p, 1)], key="shared-key")
        self.assertFalse(other.replayed)
        self.assertNotEqual(other.order.id, first.order.id)

    def test_concurrent_creates_with_one_key_make_one_order(self):
        user, p = new_user(), product()
        results, errors = [], []

        def worker():
            try:
                results.append(create(user, [(p, 3)], key="race"))
            except grpc.RpcError as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len({r.order.id for r in results}), 1)
        self.assertEqual(sum(not r.replayed for r in results), 1)
        self.assertEqual(len(order_call("ListOrders", who(user), user_id=user).orders), 1)

    def test_product_svc_unreachable_is_unavailable_but_replays_still_answer(self):
        user, p = new_user(), product()
        first = create(user, [(p, 1)], key="before-outage")
        dead = Service("order-svc", "ORDER_DATABASE_URL", PRODUCT_ADDR="127.0.0.1:1")
        channel = dead.channel()
        try:
            self.assertStatus(grpc.StatusCode.UNAVAILABLE, create, user, [(p, 1)],
                              channel=channel)
            replay = create(user, [(p, 1)], key="before-outage", channel=channel)
            self.assertTrue(replay.replayed)
            self.assertEqual(replay.order.id, first.order.id)
        finally:
            channel.close()
            dead.check_stop()


class TestIdempotencyRetention(Base):
    """Keys are kept for IDEMPOTENCY_RETENTION (default 24h), then the sweeper deletes
    them and the same key makes a new order. Ages are made by moving created_at back
    rather than by a short retention: a sweeper with a retention of seconds would also
    delete the keys of the tests running beside this one on the shared stack."""

    @staticmethod
    def age(user, key, interval):
        psql("ORDER_DATABASE_URL", "UPDATE idempotency_keys SET created_at = created_at -"
             " interval '%s' WHERE user_id = '%s' AND key = '%s'" % (interval, user, key))

    @staticmethod
    def key_exists(user, key):
        return psql("ORDER_DATABASE_URL", "SELECT count(*) FROM idempotency_keys WHERE"
                    " user_id = '%s' AND key = '%s'" % (user, key)) == "1"

    def wait_gone(self, user, key, timeout_s=30):
        end = time.time() + timeout_s
        while self.key_exists(user, key):
            self.assertLess(time.time(), end, "key %r was not purged" % key)
            time.sleep(0.1)

    def test_a_key_past_the_default_retention_is_purged_and_then_makes_a_new_order(self):
        user, p = new_user(), product()
        first = create(user, [(p, 1)], key="old-key")
        kept = create(user, [(p, 1)], key="young-key")
        self.age(user, "old-key", "24 hours 1 minute")
        self.age(user, "young-key", "23 hours")
        self.wait_gone(user, "old-key")  # ORDER_SVC sweeps every second
        self.assertTrue(self.key_exists(user, "young-key"))
        again = create(user, [(p, 2)], key="old-key")  # other lines: no longer a conflict
        self.assertFalse(again.replayed)
        self.assertNotEqual(again.order.id, first.order.id)
        replay = create(user, [(p, 2)], key="old-key")  # the key now names the new order
        self.assertTrue(replay.replayed)
        self.assertEqual(replay.order.id, again.order.id)
        replay = create(user, [(p, 1)], key="young-key")
        self.assertTrue(replay.replayed)
        self.assertEqual(replay.order.id, kept.order.id)

    def test_the_retention_is_configurable(self):
        user, p = new_user(), product()
        create(user, [(p, 1)], key="two-hours-old")
        create(user, [(p, 1)], key="half-an-hour-old")
        self.age(user, "two-hours-old", "2 hours")
        self.age(user, "half-an-hour-old", "30 minutes")
        self.assertTrue(self.key_exists(user, "two-hours-old"))  # under the default 24h
        svc = Service("order-svc", "ORDER_DATABASE_URL",
                      PRODUCT_ADDR="127.0.0.1:%d" % PRODUCT_SVC.port,
                      IDEMPOTENCY_RETENTION="1h", SWEEP_INTERVAL="100ms")
        try:
            self.wait_gone(user, "two-hours-old")
            self.assertTrue(self.key_exists(user, "half-an-hour-old"))
        finally:
            svc.check_stop()


class TestGetOrder(Base):
    def test_owner_and_admins_see_the_order_with_its_timeline(self):
        user, p = new_user(), product()
        o = create(user, [(p, 1)]).order
        mine = get(user, o.id)
        self.assertEqual((mine.id, mine.user_id, mine.total_cents), (o.id, user, o.total_cents))
        self.assertEqual(mine.timeline[0].step, "order_created")
        self.assertEqual(get(new_user(), o.id, role="admin").id, o.id)

    def test_others_missing_and_malformed_ids_are_not_found(self):
        user, p = new_user(), product()
        o = create(user, [(p, 1)]).order
        for caller, order_id in ((new_user(), o.id), (user, str(uuid.uuid4())),
                                 (user, "not-a-uuid"), (user, "")):
            with self.subTest(order_id=order_id):
                self.assertStatus(grpc.StatusCode.NOT_FOUND, get, caller, order_id)

    def test_not_found_answers_are_identical_for_get_and_cancel(self):
        """No existence oracle: somebody else's order, an unknown id and a malformed one
        answer the same status, message and trailers, on GetOrder and CancelOrder."""
        owner, p = new_user(), product()
        o = create(owner, [(p, 1)]).order
        stranger = new_user()
        answers = {}
        for method in ("GetOrder", "CancelOrder"):
            for what, order_id in (("others", o.id), ("others upper-case", o.id.upper()),
                                   ("unknown", str(uuid.uuid4())), ("malformed", "not-a-uuid"),
                                   ("empty", "")):
                e = self.assertStatus(grpc.StatusCode.NOT_FOUND, order_call, method,
                                      who(stranger), order_id=order_id)
                trailers = tuple(sorted(k for k, _ in e.trailing_metadata() or ()))
                answers[(method, what)] = (e.code(), e.details(), trailers)
        self.assertEqual(set(answers.values()),
                         {(grpc.StatusCode.NOT_FOUND, "order not found", ())}, answers)
        self.assertEqual(get(owner, o.id).status, PENDING)  # the stranger changed nothing


class TestListOrders(Base):
    def test_list_pages_through_the_owners_orders_newest_first(self):
        user, p = new_user(), product()
        made = [create(user, [(p, i + 1)]).order.id for i in range(5)]
        create(new_user(), [(p, 1)])  # somebody else's
        seen, token, pages = [], "", 0
        while True:
            resp = order_call("ListOrders", who(user), user_id=user, limit=2, page_token=token)
            for o in resp.orders:
                self.assertEqual(len(o.timeline), 0)
                self.assertEqual(len(o.lines), 1)
            seen += [o.id for o in resp.orders]
            pages += 1
            token = resp.next_page_token
            if not token:
                break
        self.assertEqual(seen, list(reversed(made)))
        self.assertEqual(pages, 3)

    def test_limit_zero_means_twenty(self):
        user, p = new_user(), product()
        for _ in range(21):
            create(user, [(p, 1)])
        resp = order_call("ListOrders", who(user), user_id=user)
        self.assertEqual(len(resp.orders), 20)
        self.assertNotEqual(resp.next_page_token, "")

    def test_customers_list_only_their_own_orders(self):
        user = new_user()
        for target in (new_user(), ""):
            with self.subTest(user_id=target):
                self.assertStatus(grpc.StatusCode.PERMISSION_DENIED, order_call, "ListOrders",
                                  who(user), user_id=target)

    def test_admins_list_any_user_or_everybody(self):
        user, p = new_user(), product()
        o = create(user, [(p, 1)]).order
        admin = who(new_user(), "admin")
        self.assertEqual([x.id for x in order_call("ListOrders", admin, user_id=user).orders],
                         [o.id])
        everybody = order_call("ListOrders", admin, user_id="", limit=100).orders
        self.assertIn(o.id, [x.id for x in everybody])
        self.assertInvalid(["user_id"], order_call, "ListOrders", admin, user_id="nobody")

    def test_bad_limits_and_page_tokens_are_invalid(self):
        user, p = new_user(), product()
        for _ in range(2):
            create(user, [(p, 1)])
        for limit in (-1, 101):
            with self.subTest(limit=limit):
                self.assertInvalid(["limit"], order_call, "ListOrders", who(user), user_id=user,
                                   limit=limit)
        token = order_call("ListOrders", who(user), user_id=user, limit=1).next_page_token
        self.assertNotEqual(token, "")
        for bad in ("garbage!", token[:-1], token + "A", "A" * 300):
            with self.subTest(token=bad):
                self.assertInvalid(["page_token"], order_call, "ListOrders", who(user),
                                   user_id=user, page_token=bad)
        # A token is only good for the listing it came from.
        self.assertInvalid(["page_token"], order_call, "ListOrders", who(new_user(), "admin"),
                           user_id="", page_token=token)


class TestPageTokens(Base):
    """Page tokens are MAC'd (common/page_token.h): forged and tampered ones are
    INVALID_ARGUMENT on page_token before any query, with no database text."""

    KIND = "order.ListOrders"

    def assertBadToken(self, md, user_id, token, channel=None, why="is not a valid page token"):
        e = self.assertInvalid(["page_token"], order_call, "ListOrders", md, channel,
                               user_id=user_id, limit=2, page_token=token)
        self.assertEqual(e.details(), "invalid request")
        self.assertEqual(self.violations(e), {"page_token": why})
        grpc_support.assert_no_db_text(self, e)
        return e

    def test_forged_and_tampered_tokens_are_invalid_without_database_text(self):
        logged = len(ORDER_SVC.logs())
        user, p = new_user(), product()
        made = [create(user, [(p, 1)]).order.id for _ in range(3)]
        token = order_call("ListOrders", who(user), user_id=user, limit=2).next_page_token
        self.assertNotEqual(token, "")
        admin = who(new_user(), "admin")
        for scope, md, user_id in ((user, who(user), user), ("*", admin, "")):
            for forged in grpc_support.plain_forgeries(made[0], scope):
                with self.subTest(forged=forged):
                    self.assertBadToken(md, user_id, forged)
        for i, bad in enumerate(grpc_support.tampered(token)):
            with self.subTest(byte=i):
                self.assertBadToken(who(user), user, bad)
        # Under another key (the tests' own; this order-svc has a random one).
        self.assertBadToken(who(user), user, grpc_support.page_token(
            self.KIND, user, 1714564800123456, made[0]))
        # Refused as bad input, not as a failure (which would be logged as one).
        self.assertNotIn('"msg":"rpc failed"', ORDER_SVC.logs()[logged:])
        # The genuine token still works, for its own listing only.
        self.assertEqual(len(order_call("ListOrders", who(user), user_id=user, limit=2,
                                        page_token=token).orders), 1)
        self.assertBadToken(admin, "", token, why="was issued for another user_id")

    def test_paging_across_instances_sharing_the_key_and_bounds_under_a_genuine_mac(self):
        # Each waits until its consumer holds partitions: librdkafka 2.0 aborts when a
        # consumer closes before its first assignment (confluentinc/librdkafka#4312).
        env = dict(PRODUCT_ADDR="127.0.0.1:%d" % PRODUCT_SVC.port,
                   PAGE_TOKEN_KEY=grpc_support.PAGE_TOKEN_KEY,
                   ready=Service._partitions_assigned)
        procs, channels = [], []
        try:
            for name in ("order-svc-a", "order-svc-b", "order-svc-c"):
                if name == "order-svc-c":
                    env["PAGE_TOKEN_KEY"] = "ab" * 32  # another key
                procs.append(ServiceProcess(name, BINARIES["order-svc"], "ORDER_DATABASE_URL",
                                            **env))
                channels.append(procs[-1].channel())
            a, b = procs[:2]
            user, p = new_user(), product()
            made = [create(user, [(p, 1)]).order.id for _ in range(5)]
            seen, token = [], ""
            for i in range(3):  # a, b, a: each page from the other instance
                resp = order_call("ListOrders", who(user), channels[i % 2], user_id=user,
                                  limit=2, page_token=token)
                seen += [o.id for o in resp.orders]
                token = resp.next_page_token
            self.assertEqual((seen, token), (list(reversed(made)), ""))
            # Another key: the token is refused.
            first = order_call("ListOrders", who(user), channels[0], user_id=user,
                               limit=2).next_page_token
            self.assertBadToken(who(user), user, first, channels[2])
            # The shared key, a genuine MAC, fields out of bounds: refused before SQL.
            last = made[0]
            for pos in ((1 << 63) - 1, grpc_support.POS_MAX + 1, -1):
                with self.subTest(pos=pos):
                    self.assertBadToken(who(user), user, grpc_support.page_token(
                        self.KIND, user, pos, last), channels[0])
            for version, flags in ((2, 1), (0, 1), (1, 2)):
                self.assertBadToken(who(user), user, grpc_support.page_token(
                    self.KIND, user, 1714564800123456, last, version=version, flags=flags),
                    channels[0])
            # ... and in bounds it is a cursor like any other.
            resp = order_call("ListOrders", who(user), channels[1], user_id=user, limit=10,
                              page_token=grpc_support.page_token(self.KIND, user,
                                                                 grpc_support.POS_MAX, last))
            self.assertEqual([o.id for o in resp.orders], list(reversed(made)))
            for x in (a, b):
                self.assertNotIn('"msg":"rpc failed"', x.logs())
                self.assertNotIn("PAGE_TOKEN_KEY is not set", x.logs())
            self.assertIn("PAGE_TOKEN_KEY is not set", ORDER_SVC.logs())
        finally:
            for ch in channels:
                ch.close()
            stopped = []
            for x in procs:  # every one, even when one fails
                try:
                    x.check_stop()
                except AssertionError as e:
                    stopped.append(str(e))
            self.assertEqual(stopped, [])

    def test_a_bad_page_token_key_stops_the_service_naming_the_variable(self):
        for bad in ("short", "ab" * 31, "not base64 at all!!" * 3):
            with self.subTest(key=bad):
                # With its certificate, so that the key is the one thing wrong (the Go
                # peer checks its TLS settings first).
                env = dict(os.environ, PAGE_TOKEN_KEY=bad, GRPC_ADDR="127.0.0.1:0",
                           ADMIN_ADDR="127.0.0.1:0",
                           DATABASE_URL=os.environ["ORDER_DATABASE_URL"],
                           **grpc_support.tls_env("order-svc"))
                r = subprocess.run([BINARIES["order-svc"]], env=env, capture_output=True,
                                   text=True, timeout=30)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("PAGE_TOKEN_KEY", r.stderr)
                self.assertNotIn(bad, r.stderr + r.stdout)


class TestCancelOrder(Base):
    def test_pending_order_cannot_be_cancelled(self):
        # No user-svc runs here: the order waits PENDING for its payment.
        wait_no_user_svc()
        user, p = new_user(), product()
        o = create(user, [(p, 1)]).order
        e = self.assertStatus(grpc.StatusCode.FAILED_PRECONDITION, order_call, "CancelOrder",
                              who(user), order_id=o.id)
        self.assertIn("still being processed", e.details())
        self.assertEqual(get(user, o.id).status, PENDING)

    def test_cancelled_order_is_returned_unchanged(self):
        wait_saga_ready()
        user, p = new_user(), product(stock=0)
        o = create(user, [(p, 1)]).order
        o = wait_order(user, o.id, lambda x: x.status == CANCELLED)
        self.assertEqual(o.cancel_reason, OUT_OF_STOCK)
        again = order_call("CancelOrder", who(user), order_id=o.id).order
        self.assertEqual((again.status, again.cancel_reason, again.updated_at),
                         (CANCELLED, OUT_OF_STOCK, o.updated_at))

    def test_others_and_missing_orders_are_not_found(self):
        user, p = new_user(), product()
        o = create(user, [(p, 1)]).order
        for caller, order_id in ((new_user(), o.id), (user, str(uuid.uuid4())),
                                 (user, "not-a-uuid")):
            with self.subTest(order_id=order_id):
                self.assertStatus(grpc.StatusCode.NOT_FOUND, order_call, "CancelOrder",
                                  who(caller), order_id=order_id)


class TestCancelConfirmedOrder(Base):
    """With user-svc running, so that orders are paid and confirmed."""

    @classmethod
    def setUpClass(cls):
        cls.user_svc = Service("user-svc", "USER_DATABASE_URL")
        cls.user_channel = cls.user_svc.channel()

    @classmethod
    def tearDownClass(cls):
        cls.user_channel.close()
        cls.user_svc.check_stop()

    def customer(self, balance):
        u = call(USER + "CreateUser",
                 msg("shop.user.v1.CreateUserRequest", email="%s@%s.example" % (uuid.uuid4(), TAG),
                     password="order test password", display_name="order test"),
                 "shop.user.v1.CreateUserResponse", None, self.user_channel).user
        USERS.append(u.id)
        call(USER + "Deposit", msg("shop.user.v1.DepositRequest", user_id=u.id,
                                   amount_cents=balance, currency="USD", idempotency_key="seed"),
             "shop.user.v1.DepositResponse", who(u.id), self.user_channel)
        return u.id

    def balance(self, user):
        return call(USER + "GetWallet", msg("shop.user.v1.GetWalletRequest", user_id=user),
                    "shop.user.v1.GetWalletResponse", who(user), self.user_channel).balance_cents

    def test_owner_cancels_a_confirmed_order_and_gets_refunded(self):
        wait_saga_ready(self.user_svc)
        user, p = self.customer(5000), product(price=700, stock=10)
        o = create(user, [(p, 2)]).order
        o = wait_order(user, o.id, lambda x: x.status == CONFIRMED)
        self.assertEqual(o.status, CONFIRMED)
        self.assertEqual(self.balance(user), 3600)
        # Only the owner may cancel: others do not see it, admins are refused.
        self.assertStatus(grpc.StatusCode.NOT_FOUND, order_call, "CancelOrder", who(new_user()),
                          order_id=o.id)
        self.assertStatus(grpc.StatusCode.PERMISSION_DENIED, order_call, "CancelOrder",
                          who(new_user(), "admin"), order_id=o.id)
        c = order_call("CancelOrder", who(user), order_id=o.id).order
        self.assertEqual((c.status, c.cancel_reason), (CANCELLED, USER_REQUESTED))
        self.assertEqual(c.timeline[-1].step, "order_cancelled")
        self.assertEqual(c.timeline[-1].status, CANCELLED)
        again = order_call("CancelOrder", who(user), order_id=o.id).order
        self.assertEqual((again.cancel_reason, again.updated_at), (USER_REQUESTED, c.updated_at))
        # The saga gives the money and the stock back; the timeline shows each step.
        o = wait_order(user, o.id, lambda x: {"payment_refunded", "stock_released"} <=
                       {t.step for t in x.timeline})
        steps = [t.step for t in o.timeline]
        for step in ("order_created", "stock_reserved", "payment_completed", "order_confirmed",
                     "order_cancelled", "payment_refunded", "stock_released"):
            self.assertIn(step, steps)
        self.assertLess(steps.index("order_confirmed"), steps.index("order_cancelled"))
        for t in o.timeline:
            self.assertRegex(t.at, RFC3339)
        self.assertEqual(self.balance(user), 5000)


def main():
    global DESCRIPTORS
    if len(sys.argv) != 5:
        sys.exit("usage: test_order_rpc.py ORDER_SVC PRODUCT_SVC USER_SVC DESCRIPTOR_SET")
    BINARIES.update({"order-svc": sys.argv[1], "product-svc": sys.argv[2],
                     "user-svc": sys.argv[3]})
    DESCRIPTORS = sys.argv[4]
    unittest.main(argv=sys.argv[:1], verbosity=2)


if __name__ == "__main__":
    main()
