"""Seed data and order load, through the gateway only.

Scarcity is planned so that the three outcomes each take a healthy share: products
get between 0.2x and 1.0x of the units the run will ask of them, customers between
0.1x and 0.7x of the money their orders would cost, so some products run out
(OUT_OF_STOCK), some wallets run dry (PAYMENT_FAILED) and the rest confirm. A share
of the orders are marked for cancellation: their owner cancels them if they
CONFIRM, which refunds the money and restocks the units (USER_REQUESTED).
"""

import heapq
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from chaos_client import GiveUp, User

UNITS_PER_ORDER = 4  # 1..3 lines of 1..3 units: 2 x 2 on average
CALL_DEADLINE_S = 180  # one call's retries, faults included
MAX_FAILURES = 20  # calls without an answer before the load stops: the fleet is down


def product_price(i):
    return 200 + 97 * (i % 10) + 13 * i


def plan_catalog(n_orders, n_products):
    """[(price_cents, stock)] per product."""
    demand = UNITS_PER_ORDER * n_orders / n_products
    out = []
    for i in range(n_products):
        share = 0.2 + 0.8 * i / max(1, n_products - 1)
        out.append((product_price(i), max(1, round(share * demand))))
    return out


def plan_deposits(n_orders, n_users, catalog):
    avg_total = UNITS_PER_ORDER * sum(p for p, _ in catalog) / len(catalog)
    per_user = n_orders / n_users * avg_total
    return [max(100, round((0.1 + 0.6 * u / max(1, n_users - 1)) * per_user))
            for u in range(n_users)]


def plan_orders(rng, n_orders, n_users, n_products, cancel_share):
    """[(user index, [(product index, quantity)], cancel?)], from the seeded RNG."""
    orders = []
    for _ in range(n_orders):
        u = rng.randrange(n_users)
        ps = rng.sample(range(n_products), rng.randint(1, min(3, n_products)))
        orders.append((u, [(p, rng.randint(1, 3)) for p in ps], rng.random() < cancel_share))
    return orders


class Seed:
    """The admin, the catalog and the customers of one run."""

    def __init__(self, stack, gw, run_id, log):
        self.stack, self.gw, self.run_id, self.log = stack, gw, run_id, log
        self.products = []  # dicts: id, price, stock
        self.users = []  # User
        self.deposits = []  # cents per user, as deposited

    def admin(self):
        pw = f"chaos admin {uuid.uuid4().hex}"
        email = f"admin-{self.run_id}@chaos.example"
        self.stack.create_admin(email, pw)
        a = User(self.gw, email, pw, "Chaos admin")
        a.login(time.monotonic() + CALL_DEADLINE_S)
        return a

    def catalog(self, admin, plan):
        for i, (price, stock) in enumerate(plan):
            d = time.monotonic() + CALL_DEADLINE_S
            sku = f"CHAOS-{self.run_id}-{i:02d}"
            status, doc = admin.call("POST", "/products",
                                     {"sku": sku, "name": f"Chaos product {i}",
                                      "price_cents": price}, deadline=d)
            if status == 409:  # created by an attempt whose answer was lost
                status, doc = admin.call("GET", f"/products?q={sku}&limit=1", deadline=d)
                doc = (doc or {}).get("products", [None])[0]
                status = 201 if doc else status
            if status != 201 or not doc:
                raise RuntimeError(f"create product {sku}: {status} {doc}")
            pid = doc["id"]
            status, doc = admin.call("PUT", f"/products/{pid}/stock", {"available": stock},
                                     deadline=d)
            if status != 200:
                raise RuntimeError(f"stock of {sku}: {status} {doc}")
            self.products.append({"id": pid, "price": price, "stock": stock})
        self.log(f"seed: {len(self.products)} products, {sum(p['stock'] for p in self.products)}"
                 " units in stock")

    def customers(self, amounts, threads=3):
        """Registers, logs in and funds the customers. Few threads: each registration
        and login is an argon2id hash, and under the sanitizer build more at once
        outlast the gateway's 2 s upstream deadline."""
        users = [User(self.gw, f"c{u:03d}-{self.run_id}@chaos.example",
                      f"chaos customer {uuid.uuid4().hex}", f"Customer {u}")
                 for u in range(len(amounts))]

        def one(pair):
            user, amount = pair
            d = time.monotonic() + CALL_DEADLINE_S
            user.register(d)
            user.login(d)
            status, doc = user.call("GET", "/users/me", deadline=d)
            if status != 200:
                raise RuntimeError(f"{user.email}: GET /users/me {status} {doc}")
            user.id = doc["user"]["id"]
            key = f"seed-{self.run_id}-{user.id}"
            status, doc = user.call("POST", "/users/me/wallet/deposits", {"amount_cents": amount},
                                    {"Idempotency-Key": key}, deadline=d)
            if status not in (200, 201):
                raise RuntimeError(f"{user.email}: deposit {status} {doc}")

        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(one, zip(users, amounts)))
        self.users, self.deposits = users, list(amounts)
        self.log(f"seed: {len(users)} customers, {sum(amounts)} cents deposited")


class Load:
    """N orders from T threads, plus the cancellations of the marked ones."""

    def __init__(self, seed, plan, progress, stats, run_id, threads, rate, log):
        self.seed, self.plan, self.progress = seed, plan, progress
        self.stats, self.run_id, self.threads, self.log = stats, run_id, threads, log
        self.rate = rate  # orders per second at most, so the load spans the faults
        self.t0 = None
        self.results = [None] * len(plan)  # dicts per order index
        self.cancels = {"requested": 0, "cancelled": 0, "not_confirmed": 0, "gave_up": 0}
        self.failures = []  # strings: calls without a final answer, unexpected statuses
        self._mu = threading.Lock()
        self._due = []  # heap of (due time, order index, attempts)

    def run(self):
        self.t0 = time.monotonic()
        workers = [threading.Thread(target=self._worker, name=f"load-{t}", daemon=True)
                   for t in range(self.threads)]
        for w in workers:
            w.start()
        reporter = threading.Thread(target=self._report, daemon=True)
        reporter.start()
        for w in workers:
            w.join()

    def _report(self):
        while any(r is None for r in self.results) and not self.progress.aborted:
            time.sleep(10)
            done = sum(r is not None for r in self.results)
            self.log(f"load: {self.progress.claimed} claimed, {done} answered, "
                     f"retries {self.stats.snapshot()}")

    def _worker(self):
        while True:
            self._cancel_due()
            i = self.progress.claim()
            if i is None:
                break
            pause = self.t0 + i / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                self._place(i)
            except Exception as e:  # a harness bug must show, not hang the run
                self._fail(f"order {i}: {type(e).__name__}: {e}")
                self.results[i] = {"i": i, "order_id": None, "status": None}
        # The load is placed: finish the cancellations still waiting for their order.
        while not self.progress.aborted:
            with self._mu:
                if not self._due:
                    return
                wait = self._due[0][0] - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.5))
            self._cancel_due()

    def _place(self, i):
        u, lines, cancel = self.plan[i]
        user = self.seed.users[u]
        key = f"chaos-{self.run_id}-{i}-{uuid.uuid4().hex[:12]}"
        body = {"lines": [{"product_id": self.seed.products[p]["id"], "quantity": q}
                          for p, q in lines]}
        t = time.monotonic()
        rec = {"i": i, "user": user.id, "key": key, "order_id": None, "status": None}
        try:
            status, rh, doc = user.call("POST", "/orders", body, {"Idempotency-Key": key},
                                        deadline=t + CALL_DEADLINE_S, with_headers=True)
            rec["status"] = status
            if status == 202 and doc and doc.get("id"):
                rec["order_id"] = doc["id"]
                # A replay answers 202 as the first answer did; the header tells.
                rec["replayed"] = rh.get("Idempotent-Replayed") == "true"
            else:
                self._fail(f"order {i}: POST /orders answered {status} {doc}")
        except (GiveUp, RuntimeError) as e:
            self._fail(f"order {i}: {e}")
        rec["latency_s"] = time.monotonic() - t
        rec["t"] = time.time()  # when it was answered: the rate the load reached
        self.results[i] = rec
        if cancel and rec["order_id"]:
            with self._mu:
                self.cancels["requested"] += 1
                heapq.heappush(self._due, (time.monotonic() + 1.0, i, 0))

    def _fail(self, what):
        with self._mu:
            self.failures.append(what)
            n = len(self.failures)
        self.log(what)
        if n >= MAX_FAILURES:
            self.progress.abort(f"{n} calls failed; the last: {what}")

    def _cancel_due(self):
        """Handles one due cancellation: cancel if CONFIRMED, wait more if PENDING."""
        with self._mu:
            if not self._due or self._due[0][0] > time.monotonic():
                return
            _, i, attempts = heapq.heappop(self._due)
        rec = self.results[i]
        user = self.seed.users[self.plan[i][0]]
        d = time.monotonic() + CALL_DEADLINE_S
        try:
            status, doc = user.call("GET", f"/orders/{rec['order_id']}", deadline=d)
            state = (doc or {}).get("status") if status == 200 else None
            if state == "confirmed":
                status, doc = user.call("POST", f"/orders/{rec['order_id']}/cancel", deadline=d)
                if status == 200 and (doc or {}).get("cancel_reason") == "user_requested":
                    state = "cancelled_now"
                if status not in (200, 409):
                    self._fail(f"cancel of order {i}: {status} {doc}")
                    return
            elif status != 200:
                self._fail(f"GET order {i}: {status} {doc}")
                return
        except (GiveUp, RuntimeError) as e:
            self._fail(f"cancel of order {i}: {e}")
            return
        with self._mu:
            if state == "cancelled_now":
                self.cancels["cancelled"] += 1
                rec["user_cancelled"] = True
            elif state == "cancelled":
                self.cancels["not_confirmed"] += 1
            elif attempts < 60:  # still pending (or 409: pending at the cancel)
                heapq.heappush(self._due, (time.monotonic() + 1.0, i, attempts + 1))
            else:
                self.cancels["gave_up"] += 1
