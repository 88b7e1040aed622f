"""Seeding through the REST API: an admin, products with stock, customers with money.

Everything goes through the gateway as a client would, so the stack under test holds
exactly what its own code wrote. The customers' access tokens live in a file, one per
line, because bench_sagaload reads them from there.
"""

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from .config import N_PRODUCTS, N_USERS
from .util import HarnessError, say

ADMIN_EMAIL = "admin@bench.example"
ADMIN_PASSWORD = "bench admin passphrase"
CUSTOMER_PASSWORD = "bench customer passphrase"
TOKEN_MAX_AGE_S = 600


class ApiError(Exception):
    """A REST call that did not answer 2xx (curl -f's failure)."""


class Api:
    """The gateway's REST API at base (…/api/v1)."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, token=None, body=None, headers=None):
        """One JSON request; the decoded answer (None when empty), ApiError otherwise."""
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(f"{method} {path}: {e}") from e
        return json.loads(raw) if raw.strip() else None

    def login(self, email: str, password: str) -> str:
        """An access token; HarnessError when the login fails (nothing can run)."""
        try:
            token = (self.call("POST", "/auth/login", body={"email": email, "password": password})
                     or {}).get("access_token")
        except ApiError as e:
            raise HarnessError(f"login {email}: {e}") from e
        if not token:
            raise HarnessError(f"login {email}: no access_token")
        return token


class Customers:
    """The seeded customers' tokens, in work/tokens for bench_sagaload."""

    def __init__(self, api: Api, work: Path):
        self.api = api
        self.file = work / "tokens"
        self.tokens: list = []
        self._at = 0.0

    @staticmethod
    def email(i: int) -> str:
        return f"c{i}@bench.example"

    def refresh(self) -> None:
        """Fresh access tokens (they live 15 minutes) of every customer."""
        self.tokens = [self.api.login(self.email(i), CUSTOMER_PASSWORD)
                       for i in range(1, N_USERS + 1)]
        self.file.write_text("".join(t + "\n" for t in self.tokens))
        self._at = time.monotonic()

    def fresh(self) -> None:
        """New tokens only when these are 10 minutes old: a login costs user-svc an
        argon2id hash (19 MiB, ~0.1 s), which would otherwise show in the footprint and
        in the CPU under load."""
        if time.monotonic() - self._at >= TOKEN_MAX_AGE_S:
            self.refresh()

    @property
    def first(self) -> str:
        return self.tokens[0]


def _must(what: str, fn, *args, **kw):
    """A seeding call that must work: without it nothing can be measured."""
    try:
        return fn(*args, **kw)
    except ApiError as e:
        raise HarnessError(f"{what}: {e}") from e


def seed(stack, api: Api, customers: Customers, work: Path) -> list:
    """An admin, N_PRODUCTS products (100 cents, 10^8 in stock) and N_USERS customers
    with 10^6 dollars each; returns the product ids (also in work/products)."""
    if not stack.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD):
        raise HarnessError("create-admin failed")
    admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    products = []
    for i in range(1, N_PRODUCTS + 1):
        body = {"sku": f"BENCH-{i}", "name": f"Bench product {i}", "price_cents": 100}
        pid = (_must("product", api.call, "POST", "/products", admin, body) or {}).get("id")
        _must(f"stock of {pid}", api.call, "PUT", f"/products/{pid}/stock", admin,
              {"available": 100000000})
        products.append(pid)
    (work / "products").write_text("".join(p + "\n" for p in products))
    for i in range(1, N_USERS + 1):
        body = {"email": customers.email(i), "password": CUSTOMER_PASSWORD, "display_name": f"C{i}"}
        _must(f"register c{i}", api.call, "POST", "/auth/register", body=body)
    customers.refresh()
    for token in customers.tokens:
        _must("deposit", api.call, "POST", "/users/me/wallet/deposits", token,
              {"amount_cents": 100000000}, {"Idempotency-Key": f"seed-{uuid.uuid4()}"})
    say(f"seeded {N_PRODUCTS} products, {N_USERS} customers")
    return products
