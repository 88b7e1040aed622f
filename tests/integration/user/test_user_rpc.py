#!/usr/bin/python3
"""shop.user.v1.UserService through a real gRPC client (Debian's python3-grpcio).

    test_user_rpc.py USER_SVC_BINARY DESCRIPTOR_SET

Starts the real user-svc binary against the test stack (USER_DATABASE_URL,
KAFKA_BROKERS from the environment), calls every RPC with generic unary calls whose
messages come from python3-protobuf and the FileDescriptorSet protoc-c wrote from
proto/ at build time (so requests and answers are encoded by a protobuf library
no one here wrote), and checks the answers and status codes the proto comments
promise. It also reads the users table (psql) to see how passwords are stored, and
runs the `create-admin` command. Every email the run registers contains a random
tag, so reruns and other tests on the same database never meet; the tag's rows are
deleted at the end.
"""
import os
import re
import statistics
import subprocess
import sys
import time
import unittest
import urllib.request
import uuid

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
import grpc_support  # noqa: E402
from grpc_support import (HEALTH_CHECK, RFC3339, TIMEOUT_S, RpcTestCase,  # noqa: E402
                          ServiceProcess, load_messages, unary)

SVC = "/shop.user.v1.UserService/"
TAG = "ut%s" % uuid.uuid4().hex[:10]
ARGON2ID = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=1"
                      r"\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PASSWORD = "correct horse battery"
SECRETS = []  # passwords this run sent: none with a blank (unmistakable) may be logged

BINARY = DESCRIPTORS = None
M = {}  # full message name -> class
SERVICE = CHANNEL = None

METHODS = {  # method -> (request, response) message names
    name: ("shop.user.v1.%sRequest" % name, "shop.user.v1.%sResponse" % name)
    for name in ("CreateUser", "VerifyCredentials", "GetUser", "UpdateProfile",
                 "GetPreferences", "UpdatePreferences", "GetWallet", "Deposit")
}


def msg(name, **fields):
    return M["shop.user.v1." + name](**fields)


# --- the service under test ------------------------------------------------------


def service_env(**extra):
    return dict(os.environ, DATABASE_URL=os.environ["USER_DATABASE_URL"],
                KAFKA_BROKERS=os.environ["KAFKA_BROKERS"], **extra)


def setUpModule():
    global SERVICE, CHANNEL, M
    M = load_messages(DESCRIPTORS)
    SERVICE = ServiceProcess("user-svc", BINARY, "USER_DATABASE_URL",
                             KAFKA_BROKERS=os.environ["KAFKA_BROKERS"])
    CHANNEL = SERVICE.channel()


def tearDownModule():
    CHANNEL.close()
    try:
        logs = SERVICE.check_stop()
    finally:
        cleanup()
    leaked = [s for s in SECRETS if " " in s and s in logs]
    if "$argon2id$" in logs:
        leaked.append("$argon2id$")
    assert not leaked, "secrets in the service log: %r" % leaked


def psql(sql):
    return grpc_support.psql(os.environ["USER_DATABASE_URL"], sql)


def cleanup():
    """Deletes this run's users (every email contains TAG) and what hangs off them."""
    users = "SELECT id FROM users WHERE email ILIKE '%%%s%%'" % TAG
    psql(";".join("DELETE FROM %s WHERE user_id IN (%s)" % (t, users)
                  for t in ("ledger", "wallets", "preferences", "profiles")) +
         "; DELETE FROM users WHERE email ILIKE '%%%s%%'" % TAG)


# --- calls -----------------------------------------------------------------------


def stub(method, channel=None):
    return unary(channel or CHANNEL, SVC + method, M[METHODS[method][1]])


def call(method, md=None, **fields):
    req = M[METHODS[method][0]](**fields)
    return stub(method)(req, timeout=TIMEOUT_S, metadata=md)


def as_user(user_id, role="customer"):
    return (("x-user-id", user_id), ("x-user-role", role), ("x-request-id", uuid.uuid4().hex))


ADMIN = as_user(str(uuid.uuid4()), "admin")


def new_email(prefix="u"):
    return "%s.%s.%s@Example.COM" % (prefix, TAG, uuid.uuid4().hex[:8])


def create_user(email=None, password=PASSWORD, display_name="Alice"):
    SECRETS.append(password)
    return call("CreateUser", email=new_email() if email is None else email, password=password,
                display_name=display_name).user


def violations(err):
    """The field -> description map of the grpc-status-details-bin trailer's
    google.rpc.BadRequest (python3-protobuf)."""
    return grpc_support.violations(err, M)


class Base(RpcTestCase):
    violations = staticmethod(violations)  # assertInvalid decodes with python3-protobuf too

    def assertNotFound(self, fn, *args, **kw):
        err = self.assertStatus(grpc.StatusCode.NOT_FOUND, fn, *args, **kw)
        self.assertEqual(err.details(), "user not found")
        return err


# --- CreateUser --------------------------------------------------------------------


class CreateUserTest(Base):
    def test_creates_a_customer_with_the_email_trimmed_and_its_case_kept(self):
        email = new_email("Case")
        user = create_user(email="  %s \t" % email, display_name="  Alice Å  ")
        self.assertRegex(user.id, UUID_RE)
        self.assertEqual(user.email, email)
        self.assertEqual(user.display_name, "Alice Å")
        self.assertEqual(user.role, M["shop.user.v1.User"].DESCRIPTOR.fields_by_name["role"]
                         .enum_type.values_by_name["ROLE_CUSTOMER"].number)
        self.assertRegex(user.created_at, RFC3339)

    def test_password_is_stored_only_as_an_argon2id_hash(self):
        a = create_user(password="same password 1")
        b = create_user(password="same password 1")
        rows = psql("SELECT id || ' ' || password_hash FROM users WHERE id IN ('%s', '%s')"
                    % (a.id, b.id)).splitlines()
        hashes = dict(r.split(" ", 1) for r in rows)
        for h in hashes.values():
            m = ARGON2ID.match(h)
            self.assertIsNotNone(m, h)
            self.assertGreaterEqual(int(m.group(1)), 19456)
            self.assertGreaterEqual(int(m.group(2)), 2)
            self.assertNotIn("same password", h)
        self.assertNotEqual(hashes[a.id], hashes[b.id], "each hash has its own salt")
        columns = psql("SELECT string_agg(column_name, ',') FROM information_schema.columns"
                       " WHERE table_name = 'users'").split(",")
        self.assertNotIn("password", columns)

    def test_taken_email_is_already_exists_compared_case_insensitively(self):
        email = new_email("Taken")
        create_user(email=email)
        for again in (email, email.upper(), email.lower(), " %s " % email.swapcase()):
            err = self.assertStatus(grpc.StatusCode.ALREADY_EXISTS, create_user, email=again)
            self.assertEqual(list(violations(err)), ["email"])

    def test_bad_emails_are_invalid_on_email(self):
        for bad in ("", "plain", "@example.com", "a@", "a@@b.com", "a b@example.com",
                    "a@b@c.com", "a@.example.com", "a@example..com", "a@example.com.",
                    "a\x01@example.com", "a@%s.co" % ("x" * 250), "%s@example.com" % ("l" * 65)):
            with self.subTest(email=bad):
                self.assertInvalid(["email"], create_user, email=bad)
        # 254 characters is the limit, counted in characters.
        ok = "%s@%s.co" % (TAG, "é" * (254 - len(TAG) - 4))
        self.assertEqual(len(ok), 254)
        self.assertEqual(create_user(email=ok).email, ok)

    def test_password_must_be_8_to_128_characters_not_bytes(self):
        for bad in ("", "1234567", "é" * 7, "x" * 129, "é" * 129):
            with self.subTest(length=len(bad)):
                self.assertInvalid(["password"], create_user, password=bad)
        for good in ("12345678", "é" * 8, "x" * 128, "é" * 100, "密码" * 4):
            with self.subTest(length=len(good)):
                create_user(password=good)

    def test_display_name_must_be_1_to_100_characters(self):
        for bad in ("", "   ", "x" * 101, "tab\tname", "nul\x7f"):
            with self.subTest(name=bad):
                self.assertInvalid(["display_name"], create_user, display_name=bad)
        self.assertEqual(create_user(display_name="ü" * 100).display_name, "ü" * 100)

    def test_every_bad_field_is_reported_at_once(self):
        self.assertInvalid(["email", "password", "display_name"], create_user, email="nope",
                           password="short", display_name="")


# --- VerifyCredentials -------------------------------------------------------------


class VerifyCredentialsTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.email = new_email("Login")
        cls.user = create_user(email=cls.email, password="the right password")

    def verify(self, email, password):
        SECRETS.append(password)
        return call("VerifyCredentials", email=email, password=password).user

    def test_right_password_returns_the_user_and_role(self):
        user = self.verify(self.email, "the right password")
        self.assertEqual(user.id, self.user.id)
        self.assertEqual(user.email, self.email)
        self.assertEqual(user.role, 1)  # ROLE_CUSTOMER

    def test_email_matches_case_insensitively_and_trimmed(self):
        self.assertEqual(self.verify("  %s " % self.email.upper(), "the right password").id,
                         self.user.id)

    def test_wrong_password_and_unknown_email_are_the_same_unauthenticated(self):
        wrong = self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, self.verify, self.email,
                                  "the wrong password")
        unknown = self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, self.verify,
                                    new_email("Nobody"), "the right password")
        self.assertEqual(wrong.details(), unknown.details())
        self.assertEqual(wrong.details(), "invalid email or password")
        self.assertEqual(violations(wrong), {})
        self.assertEqual(violations(unknown), {})
        # A password that differs only in case is wrong.
        self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, self.verify, self.email,
                          "THE RIGHT PASSWORD")

    def test_unknown_email_costs_as_much_as_a_wrong_password(self):
        def timed(email):
            start = time.monotonic()
            self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, self.verify, email, "wrong pass")
            return time.monotonic() - start
        known, unknown = [], []
        for _ in range(7):  # interleaved, so load changes hit both sides
            known.append(timed(self.email))
            unknown.append(timed(new_email("Nobody")))
        k, u = statistics.median(known), statistics.median(unknown)
        self.assertGreater(u, 0.010, "an unknown email must run argon2id too: %.4f s" % u)
        # Same work on both sides; the bounds leave room for a busy machine.
        self.assertTrue(1 / 3 < u / k < 3, "median known %.4f s, unknown %.4f s" % (k, u))

    def test_empty_or_oversized_fields_are_invalid(self):
        self.assertInvalid(["email", "password"], self.verify, "", "")
        self.assertInvalid(["password"], self.verify, self.email, "x" * 129)
        self.assertInvalid(["email"], self.verify, "x" * 255, "whatever1")


# --- GetUser and UpdateProfile -----------------------------------------------------


class ProfileTest(Base):
    def setUp(self):
        self.user = create_user(display_name="Bob")
        self.md = as_user(self.user.id)

    def update(self, mask, md=None, user_id=None, **fields):
        return call("UpdateProfile", md or self.md,
                    user_id=self.user.id if user_id is None else user_id,
                    update_mask=mask, **fields)

    def test_owner_gets_user_and_empty_profile(self):
        r = call("GetUser", self.md, user_id=self.user.id)
        self.assertEqual(r.user, self.user)
        self.assertEqual(r.profile.display_name, "Bob")
        self.assertEqual(r.profile.phone, "")
        self.assertFalse(r.profile.HasField("shipping_address"))
        # The id compares case-insensitively.
        self.assertEqual(call("GetUser", self.md, user_id=self.user.id.upper()).user.id,
                         self.user.id)

    def test_without_x_user_id_every_owner_method_is_unauthenticated(self):
        uid = self.user.id
        for method, fields in (("GetUser", {}), ("GetPreferences", {}), ("GetWallet", {}),
                               ("UpdateProfile", {"update_mask": ["phone"]}),
                               ("UpdatePreferences", {"update_mask": ["language"],
                                                      "language": "en"}),
                               ("Deposit", {"amount_cents": 1, "idempotency_key": "k"})):
            for md in (None, (("x-user-role", "admin"),), (("x-user-id", "not-a-uuid"),)):
                with self.subTest(method=method, md=md):
                    self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, call, method, md,
                                      user_id=uid, **fields)

    def test_other_users_unknown_and_malformed_ids_are_the_same_not_found(self):
        other = create_user()
        for target in (other.id, str(uuid.uuid4()), "not-a-uuid", ""):
            with self.subTest(target=target):
                self.assertNotFound(call, "GetUser", self.md, user_id=target)
                self.assertNotFound(self.update, ["phone"], user_id=target, phone="")
        # An admin may read anyone, but an unknown id is still NOT_FOUND.
        self.assertEqual(call("GetUser", ADMIN, user_id=other.id).user.id, other.id)
        self.assertNotFound(call, "GetUser", ADMIN, user_id=str(uuid.uuid4()))

    def test_updates_only_the_masked_fields(self):
        r = self.update(["phone"], phone="+14155550100", display_name="ignored")
        self.assertEqual(r.profile.phone, "+14155550100")
        self.assertEqual(r.user.display_name, "Bob")
        r = self.update(["display_name"], display_name="  Robert ", phone="ignored")
        self.assertEqual(r.user.display_name, "Robert")
        self.assertEqual(r.profile.display_name, "Robert")
        self.assertEqual(r.profile.phone, "+14155550100")
        r = self.update(["phone"], phone="")
        self.assertEqual(r.profile.phone, "")
        self.assertEqual(call("GetUser", self.md, user_id=self.user.id).user.display_name, "Robert")

    def test_shipping_address_is_replaced_as_a_whole_and_cleared_when_absent(self):
        addr = msg("Address", line1="1 Main St", line2="Apt 2", city="Springfield",
                   region="IL", postal_code="62701", country="US")
        r = self.update(["shipping_address"], shipping_address=addr)
        self.assertEqual(r.profile.shipping_address, addr)
        smaller = msg("Address", line1="2 Side Rd", city="Paris", country="FR")
        r = self.update(["shipping_address", "phone"], shipping_address=smaller, phone="+33142")
        self.assertEqual(r.profile.shipping_address, smaller)
        got = call("GetUser", self.md, user_id=self.user.id).profile
        self.assertEqual(got.shipping_address, smaller)
        r = self.update(["shipping_address"])
        self.assertFalse(r.profile.HasField("shipping_address"))
        self.assertEqual(r.profile.phone, "+33142")

    def test_bad_values_and_masks_are_field_violations(self):
        self.assertInvalid(["update_mask"], self.update, [])
        self.assertInvalid(["update_mask"], self.update, ["email"])
        self.assertInvalid(["update_mask"], self.update, ["shipping_address.city"])
        for phone in ("4155550100", "+0123", "+1", "+1234567890123456", "+1 415 555"):
            with self.subTest(phone=phone):
                self.assertInvalid(["phone"], self.update, ["phone"], phone=phone)
        self.assertInvalid(["display_name"], self.update, ["display_name"], display_name="")
        bad = msg("Address", line1="", line2="x" * 201, city="", region="r" * 101,
                  postal_code="p" * 21, country="us")
        self.assertInvalid(["shipping_address.%s" % f for f in
                            ("line1", "line2", "city", "region", "postal_code", "country")],
                           self.update, ["shipping_address"], shipping_address=bad)
        # Nothing was written by the refused calls.
        r = call("GetUser", self.md, user_id=self.user.id)
        self.assertEqual((r.user.display_name, r.profile.phone), ("Bob", ""))

    def test_admin_may_update_another_users_profile(self):
        r = self.update(["phone"], md=ADMIN, phone="+4930123456")
        self.assertEqual(r.user.id, self.user.id)
        self.assertEqual(r.profile.phone, "+4930123456")


# --- preferences -------------------------------------------------------------------


class PreferencesTest(Base):
    def setUp(self):
        self.user = create_user()
        self.md = as_user(self.user.id)

    def get(self):
        return call("GetPreferences", self.md, user_id=self.user.id).preferences

    def update(self, mask, **fields):
        return call("UpdatePreferences", self.md, user_id=self.user.id, update_mask=mask,
                    **fields).preferences

    def test_a_new_user_gets_the_defaults(self):
        p = self.get()
        self.assertEqual((p.language, p.currency, p.marketing_opt_in), ("en", "USD", False))

    def test_put_replaces_all_three_and_patch_only_the_masked(self):
        p = self.update(["language", "currency", "marketing_opt_in"], language="de",
                        currency="USD", marketing_opt_in=True)
        self.assertEqual((p.language, p.currency, p.marketing_opt_in), ("de", "USD", True))
        p = self.update(["marketing_opt_in"], language="fr", marketing_opt_in=False)
        self.assertEqual((p.language, p.marketing_opt_in), ("de", False))
        self.assertEqual(self.get(), p)

    def test_language_tags_are_accepted_in_canonical_case(self):
        for given, stored in (("en-us", "en-US"), ("EN", "en"), ("zh-hant-tw", "zh-Hant-TW"),
                              ("es-419", "es-419"), ("sr-Latn", "sr-Latn"), ("fil", "fil")):
            with self.subTest(tag=given):
                self.assertEqual(self.update(["language"], language=given).language, stored)

    def test_unsupported_language_or_currency_is_invalid(self):
        for tag in ("", "e", "english", "en_US", "en-", "en-USA", "en-US-x", "en-US-Latn",
                    "12", "en-1234"):
            with self.subTest(tag=tag):
                self.assertInvalid(["language"], self.update, ["language"], language=tag)
        for cur in ("EUR", "usd", ""):
            with self.subTest(currency=cur):
                self.assertInvalid(["currency"], self.update, ["currency"], currency=cur)
        self.assertInvalid(["update_mask"], self.update, [])
        self.assertInvalid(["update_mask"], self.update, ["theme"])
        self.assertEqual(self.get().language, "en")

    def test_other_users_preferences_are_not_found(self):
        other = create_user()
        self.assertNotFound(call, "GetPreferences", self.md, user_id=other.id)
        self.assertNotFound(call, "UpdatePreferences", self.md, user_id=other.id,
                            update_mask=["language"], language="de")
        self.assertEqual(call("GetPreferences", ADMIN, user_id=other.id).preferences.language,
                         "en")


# --- wallet ------------------------------------------------------------------------


DEPOSIT, PAYMENT, REFUND = 1, 2, 3


class WalletTest(Base):
    def setUp(self):
        self.user = create_user()
        self.md = as_user(self.user.id)

    def deposit(self, amount, key, currency="", md=None, user_id=None):
        return call("Deposit", md or self.md,
                    user_id=self.user.id if user_id is None else user_id,
                    amount_cents=amount, currency=currency, idempotency_key=key)

    def wallet(self, limit=0, token="", md=None):
        return call("GetWallet", md or self.md, user_id=self.user.id, limit=limit,
                    page_token=token)

    def test_a_new_wallet_is_empty(self):
        w = self.wallet()
        self.assertEqual((w.balance_cents, w.currency, len(w.entries), w.next_page_token),
                         (0, "USD", 0, ""))

    def test_deposit_credits_and_a_replay_returns_the_original_entry(self):
        r = self.deposit(1500, "key-1")
        self.assertEqual((r.balance_cents, r.currency, r.replayed), (1500, "USD", False))
        self.assertEqual((r.entry.kind, r.entry.amount_cents, r.entry.currency, r.entry.order_id),
                         (DEPOSIT, 1500, "USD", ""))
        self.assertRegex(r.entry.id, UUID_RE)
        self.assertRegex(r.entry.created_at, RFC3339)
        self.deposit(500, "key-2", currency="USD")
        again = self.deposit(1500, "key-1", currency="USD")  # "" and "USD" are the same
        self.assertTrue(again.replayed)
        self.assertEqual(again.entry, r.entry)
        self.assertEqual(again.balance_cents, 2000)
        self.assertEqual(self.wallet().balance_cents, 2000)

    def test_same_key_with_another_amount_is_already_exists(self):
        self.deposit(1000, "dup")
        err = self.assertStatus(grpc.StatusCode.ALREADY_EXISTS, self.deposit, 1001, "dup")
        self.assertEqual(list(violations(err)), ["idempotency_key"])
        self.assertEqual(self.wallet().balance_cents, 1000)

    def test_keys_are_scoped_to_the_user(self):
        other = create_user()
        self.deposit(700, "shared")
        r = self.deposit(900, "shared", md=as_user(other.id), user_id=other.id)
        self.assertFalse(r.replayed)
        self.assertEqual(r.balance_cents, 900)

    def test_bad_amounts_currencies_and_keys_are_field_violations(self):
        for amount in (0, -1, 100000001):
            with self.subTest(amount=amount):
                self.assertInvalid(["amount_cents"], self.deposit, amount, "k")
        self.assertEqual(self.deposit(100000000, "max").balance_cents, 100000000)
        self.assertInvalid(["currency"], self.deposit, 1, "k", currency="EUR")
        for key in ("", "x" * 129, "new\nline", "é"):
            with self.subTest(key=key):
                self.assertInvalid(["idempotency_key"], self.deposit, 1, key)
        self.assertInvalid(["amount_cents", "currency", "idempotency_key"], self.deposit, 0, "",
                           currency="GBP")
        self.assertEqual(self.deposit(1, "k" * 128).balance_cents, 100000001)

    def test_concurrent_deposits_with_one_key_apply_once(self):
        req = M[METHODS["Deposit"][0]](user_id=self.user.id, amount_cents=4200,
                                       idempotency_key="race")
        futures = [stub("Deposit").future(req, timeout=TIMEOUT_S, metadata=self.md)
                   for _ in range(12)]
        results = [f.result() for f in futures]
        self.assertEqual(sum(not r.replayed for r in results), 1)
        self.assertEqual(len({r.entry.id for r in results}), 1)
        self.assertEqual(self.wallet().balance_cents, 4200)

    def test_ledger_pages_run_newest_first_and_cover_every_entry_once(self):
        ids = [self.deposit(i + 1, "page-%02d" % i).entry.id for i in range(25)]
        first = self.wallet()
        self.assertEqual(first.balance_cents, sum(range(1, 26)))
        self.assertEqual([e.id for e in first.entries], ids[::-1][:20])
        self.assertNotEqual(first.next_page_token, "")
        second = self.wallet(token=first.next_page_token)
        self.assertEqual([e.id for e in second.entries], ids[::-1][20:])
        self.assertEqual(second.next_page_token, "")
        seen, token = [], ""
        for _ in range(10):
            page = self.wallet(limit=7, token=token)
            self.assertLessEqual(len(page.entries), 7)
            seen += [e.id for e in page.entries]
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(seen, ids[::-1])
        exact = self.wallet(limit=25)
        self.assertEqual((len(exact.entries), exact.next_page_token), (25, ""))

    def test_bad_limit_and_page_token_are_field_violations(self):
        self.deposit(5, "one")
        for limit in (-1, 101):
            with self.subTest(limit=limit):
                self.assertInvalid(["limit"], self.wallet, limit)
        self.assertEqual(len(self.wallet(limit=100).entries), 1)
        for token in ("!!", "MA", "MDE", "LTE", "a", "Mj", "x" * 65):
            with self.subTest(token=token):
                self.assertInvalid(["page_token"], self.wallet, 0, token)

    def test_other_users_wallets_are_not_found_but_an_admin_may_deposit(self):
        other = create_user()
        self.assertNotFound(call, "GetWallet", self.md, user_id=other.id)
        self.assertNotFound(self.deposit, 10, "k", user_id=other.id)
        self.assertNotFound(self.deposit, 10, "k", md=ADMIN, user_id=str(uuid.uuid4()))
        r = self.deposit(10, "k", md=ADMIN, user_id=other.id)
        self.assertEqual(r.balance_cents, 10)
        self.assertEqual(call("GetWallet", as_user(other.id), user_id=other.id).balance_cents, 10)


class WalletTokenTest(Base):
    """Page tokens are MAC'd (common/page_token.h) and tied to the wallet: forged,
    tampered and foreign ones are INVALID_ARGUMENT on page_token before any query."""

    KIND = "user.GetWallet"

    def setUp(self):
        self.user = create_user()
        self.md = as_user(self.user.id)
        for i in range(5):
            call("Deposit", self.md, user_id=self.user.id, amount_cents=i + 1,
                 idempotency_key="tok-%d" % i)

    def wallet(self, token="", md=None, user_id=None, channel=None, limit=2):
        req = M[METHODS["GetWallet"][0]](user_id=user_id or self.user.id, limit=limit,
                                         page_token=token)
        return stub("GetWallet", channel)(req, timeout=TIMEOUT_S, metadata=md or self.md)

    def assertBadToken(self, token, why="is not a valid page token", **kw):
        e = self.assertInvalid(["page_token"], self.wallet, token, **kw)
        self.assertEqual(e.details(), "invalid request")
        self.assertEqual(violations(e), {"page_token": why})
        grpc_support.assert_no_db_text(self, e)

    def test_forged_tampered_and_foreign_tokens_are_invalid(self):
        logged = len(SERVICE.logs())
        token = self.wallet().next_page_token
        self.assertNotEqual(token, "")
        # The old format was base64url of the seq itself.
        for seq in ("9223372036854775807", "1", "-1", "99999999999999999999"):
            with self.subTest(seq=seq):
                self.assertBadToken(grpc_support.b64url(seq.encode()))
        for i, bad in enumerate(grpc_support.tampered(token)):
            with self.subTest(byte=i):
                self.assertBadToken(bad)
        self.assertBadToken(grpc_support.page_token(self.KIND, self.user.id, 3))
        self.assertNotIn('"msg":"rpc failed"', SERVICE.logs()[logged:])
        # Another wallet's token, even for an admin who may read both.
        other = create_user()
        self.assertBadToken(token, "was issued for another user_id", md=ADMIN, user_id=other.id)
        self.assertEqual(len(self.wallet(token, md=ADMIN).entries), 2)

    def test_paging_across_instances_sharing_the_key_and_bounds_under_a_genuine_mac(self):
        env = dict(KAFKA_BROKERS=os.environ["KAFKA_BROKERS"],
                   PAGE_TOKEN_KEY=grpc_support.PAGE_TOKEN_KEY, ready=grpc_support.consumer_assigned)
        procs, channels = [], []
        try:
            for name in ("user-svc-a", "user-svc-b"):
                procs.append(ServiceProcess(name, BINARY, "USER_DATABASE_URL", **env))
                channels.append(procs[-1].channel())
            seen, token = [], ""
            for i in range(3):  # a, b, a
                page = self.wallet(token, channel=channels[i % 2])
                seen += [e.amount_cents for e in page.entries]
                token = page.next_page_token
            self.assertEqual((seen, token), ([5, 4, 3, 2, 1], ""))
            first = self.wallet(channel=channels[0]).next_page_token
            self.assertBadToken(first)  # the main instance has a random key of its own
            self.assertIn("PAGE_TOKEN_KEY is not set", SERVICE.logs())
            for seq in ((1 << 63) - 1, grpc_support.POS_MAX + 1, -1, 0):
                with self.subTest(seq=seq):
                    self.assertBadToken(grpc_support.page_token(self.KIND, self.user.id, seq),
                                        channel=channels[1])
            self.assertBadToken(grpc_support.page_token(self.KIND, self.user.id, 3,
                                                        row_id=str(uuid.uuid4())),
                                channel=channels[1])
            page = self.wallet(grpc_support.page_token(self.KIND, self.user.id,
                                                       grpc_support.POS_MAX),
                               channel=channels[1], limit=10)
            self.assertEqual([e.amount_cents for e in page.entries], [5, 4, 3, 2, 1])
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


# --- the admin port and health -----------------------------------------------------


class OperationTest(Base):
    def test_health_is_serving_and_the_admin_port_answers(self):
        check = CHANNEL.unary_unary(HEALTH_CHECK)
        self.assertEqual(check(b"", timeout=TIMEOUT_S), b"\x08\x01")
        base = "http://127.0.0.1:%d" % SERVICE.admin_port
        with urllib.request.urlopen(base + "/readyz", timeout=TIMEOUT_S) as r:
            self.assertEqual(r.status, 200)
        with urllib.request.urlopen(base + "/metrics", timeout=TIMEOUT_S) as r:
            text = r.read().decode()
        self.assertRegex(text,
                         r'rpc_server_requests_total\{[^}]*method="/shop\.user\.v1\.UserService/')


# --- the create-admin command ------------------------------------------------------


def create_admin(args, stdin):
    if stdin:
        SECRETS.append(stdin.split("\n")[0])
    p = subprocess.run([BINARY] + args, input=stdin, capture_output=True, text=True, timeout=120,
                       env=service_env(GRPC_ADDR="127.0.0.1:0", ADMIN_ADDR="127.0.0.1:0"))
    ids = [line for line in p.stdout.splitlines() if UUID_RE.match(line)]
    password = stdin.split("\n")[0].strip("\r")
    assert len(password) < 8 or password not in p.stdout + p.stderr, "password echoed"
    return p.returncode, ids, p.stdout + p.stderr


class CreateAdminTest(Base):
    def test_creates_an_admin_with_the_password_from_stdin(self):
        email = new_email("Admin")
        rc, ids, out = create_admin(["create-admin", email], "admin password 1\nignored\n")
        self.assertEqual(rc, 0, out)
        self.assertEqual(len(ids), 1, out)
        user = call("VerifyCredentials", email=email, password="admin password 1").user
        self.assertEqual((user.id, user.role), (ids[0], 2))  # ROLE_ADMIN
        self.assertRegex(psql("SELECT password_hash FROM users WHERE id = '%s'" % ids[0]),
                         ARGON2ID)
        self.assertEqual(psql("SELECT count(*) FROM wallets WHERE user_id = '%s'" % ids[0]), "1")

    def test_promotes_an_existing_user_and_sets_its_password(self):
        email = new_email("Promote")
        customer = create_user(email=email, password="old password")
        rc, ids, out = create_admin(["create-admin", email.upper()], "new password 2")
        self.assertEqual(rc, 0, out)
        self.assertEqual(ids, [customer.id], out)
        user = call("VerifyCredentials", email=email, password="new password 2").user
        self.assertEqual((user.id, user.role), (customer.id, 2))
        self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, call, "VerifyCredentials",
                          email=email, password="old password")
        # Running it again is harmless.
        rc, ids, out = create_admin(["create-admin", email], "new password 2\r\n")
        self.assertEqual((rc, ids), (0, [customer.id]), out)

    def test_bad_usage_email_or_password_exits_2_and_creates_nothing(self):
        email = new_email("Refused")
        for args, stdin in ((["create-admin"], "password 123\n"),
                            (["create-admin", email, "extra"], "password 123\n"),
                            (["make-admin", email], "password 123\n"),
                            (["create-admin", "not an email"], "password 123\n"),
                            (["create-admin", email], "short\n"),
                            (["create-admin", email], ""),
                            (["create-admin", email], "x" * 600 + "\n")):
            with self.subTest(args=args, stdin=stdin[:20]):
                rc, ids, out = create_admin(args, stdin)
                self.assertEqual(rc, 2, out)
                self.assertEqual(ids, [], out)
        self.assertEqual(psql("SELECT count(*) FROM users WHERE lower(email) = lower('%s')"
                              % email), "0")


if __name__ == "__main__":
    BINARY, DESCRIPTORS = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1], verbosity=2)
