"""The invariants of docs/architecture.md §4, each a Check over a chaos_checks.Snapshot (the
databases and topics read once after quiescence) and the client's own records.
chaos_checks.py fetches the snapshot; tests/chaos/test_chaos_checks.py damages one on
purpose to see each check catch it.
"""

from collections import Counter, defaultdict

from chaos_stack import CONSUMER_GROUPS

TERMINAL = ("CONFIRMED", "CANCELLED")

class Check:
    """One invariant: how many things were checked, how many broke it, examples."""

    def __init__(self, name):
        self.name = name
        self.checked = 0
        self.violations = 0
        self.examples = []

    def ok(self, cond, what):
        """Counts one checked item; records a violation when cond is false."""
        self.checked += 1
        if not cond:
            self.violations += 1
            if len(self.examples) < 5:
                self.examples.append(what)
        return cond

    @property
    def passed(self):
        return self.violations == 0

    def as_dict(self):
        return {"name": self.name, "passed": self.passed, "checked": self.checked,
                "violations": self.violations, "examples": self.examples}


def check_terminal(s, c):
    ch = Check("every order terminal (CONFIRMED or CANCELLED)")
    for oid, o in s.orders.items():
        ch.ok(o["status"] in TERMINAL, f"order {oid} is {o['status']}")
    return ch


def check_orders_match_client(s, c):
    ch = Check("orders = the client's; each Idempotency-Key -> exactly one order")
    seen = Counter()
    for r in c["orders"]:
        if not ch.ok(r.get("order_id"), f"order {r['i']}: no answer (key {r.get('key')})"):
            continue
        seen[r["order_id"]] += 1
        ch.ok(r["order_id"] in s.orders, f"order {r['order_id']} answered but not in the database")
        ch.ok(s.keys.get((r["user"], r["key"])) == r["order_id"],
              f"key {r['key']} -> {s.keys.get((r['user'], r['key']))}, client got {r['order_id']}")
    for oid, n in seen.items():
        ch.ok(n == 1, f"order {oid} answered for {n} different keys")
    for oid in s.orders:
        ch.ok(oid in seen, f"order {oid} in the database, never answered to the client")
    ch.ok(len(s.keys) == len(s.orders),
          f"{len(s.keys)} idempotency keys for {len(s.orders)} orders")
    return ch


def check_wallets(s, c):
    ch = Check("money: wallet balance = deposits - confirmed totals = sum(ledger)")
    spent = Counter()
    for o in s.orders.values():
        if o["status"] == "CONFIRMED":
            spent[o["user"]] += o["total"]
    ledger_sum, deposits = Counter(), Counter()
    for u, kind, amount, _ in s.ledger:
        ledger_sum[u] += amount
        if kind == "deposit":
            deposits[u] += amount
    for u, balance in s.wallets.items():
        want = c["deposits"].get(u, 0)
        ch.ok(balance == ledger_sum[u] and deposits[u] == want
              and balance == deposits[u] - spent[u],
              f"wallet {u}: balance {balance}, ledger {ledger_sum[u]}, deposits {deposits[u]}"
              f" (client deposited {want}), confirmed {spent[u]}")
    return ch


def check_order_charges(s, c):
    ch = Check("money: each order charged net total if CONFIRMED, else 0")
    net = Counter()
    for _, kind, amount, oid in s.ledger:
        if kind != "deposit":
            net[oid] -= amount
    for oid, o in s.orders.items():
        want = o["total"] if o["status"] == "CONFIRMED" else 0
        ch.ok(net[oid] == want, f"order {oid} ({o['status']} {o['reason']}): charged net "
                                f"{net[oid]}, want {want}")
    for oid in net:
        ch.ok(oid in s.orders, f"ledger moves money for unknown order {oid}")
    return ch


def check_ledger_once(s, c):
    ch = Check("no duplicate money effect: <= 1 payment and <= 1 refund per order")
    entries = defaultdict(list)
    for _, kind, amount, oid in s.ledger:
        if kind != "deposit":
            entries[oid].append((kind, amount))
    for oid, es in entries.items():
        kinds = Counter(k for k, _ in es)
        pay = [a for k, a in es if k == "payment"]
        ref = [a for k, a in es if k == "refund"]
        ch.ok(kinds["payment"] <= 1 and kinds["refund"] <= 1
              and (not ref or (pay and ref[0] == -pay[0])),
              f"order {oid}: ledger {es}")
    return ch


def check_stock_conserved(s, c):
    ch = Check("stock: available + reserved + sold = added = stock put in")
    for pid, want in c["stock"].items():
        inv = s.inventory.get(pid)
        if not ch.ok(inv is not None, f"product {pid}: no inventory row"):
            continue
        av, re_, so, ad = inv
        ch.ok(av + re_ + so == ad == want,
              f"product {pid}: {av} + {re_} + {so} vs added {ad}, put in {want}")
    return ch


def check_stock_at_rest(s, c):
    ch = Check("stock: nothing reserved at rest")
    for pid, (_, re_, _, _) in s.inventory.items():
        ch.ok(re_ == 0, f"product {pid}: reserved {re_}")
    for oid, rs in s.reservations.items():
        for pid, (n, st) in rs.items():
            ch.ok(st != "RESERVED", f"order {oid} still holds {n} of {pid}")
    return ch


def check_stock_sold(s, c):
    ch = Check("stock: sold = quantities of CONFIRMED orders = committed reservations")
    want, committed = Counter(), Counter()
    for oid, o in s.orders.items():
        if o["status"] == "CONFIRMED":
            for pid, n in s.lines[oid].items():
                want[pid] += n
    for rs in s.reservations.values():
        for pid, (n, st) in rs.items():
            if st == "COMMITTED":
                committed[pid] += n
    for pid, (_, _, so, _) in s.inventory.items():
        ch.ok(so == want[pid] == committed[pid],
              f"product {pid}: sold {so}, confirmed lines {want[pid]}, committed {committed[pid]}")
    return ch


def check_reservations(s, c):
    ch = Check("no duplicate stock effect: reservations per order match its lines and status")
    for oid, o in s.orders.items():
        rs = s.reservations.get(oid, {})
        lines = s.lines[oid]
        if o["status"] == "CONFIRMED":
            ch.ok(rs and {p: (n, "COMMITTED") for p, n in lines.items()} == rs,
                  f"order {oid} CONFIRMED: lines {dict(lines)}, reservations {rs}")
        else:
            ch.ok(all(st == "RELEASED" and lines.get(p) == n for p, (n, st) in rs.items())
                  and (not rs or set(rs) == set(lines)),
                  f"order {oid} {o['status']} {o['reason']}: lines {dict(lines)}, "
                  f"reservations {rs}")
    for oid in s.reservations:
        ch.ok(oid in s.orders, f"reservations for unknown order {oid}")
    return ch


def check_non_negative(s, c):
    ch = Check("nothing negative (balances, stock counts, ledger signs)")
    for u, b in s.wallets.items():
        ch.ok(b >= 0, f"wallet {u}: {b}")
    for pid, counts in s.inventory.items():
        ch.ok(min(counts) >= 0, f"product {pid}: {counts}")
    for u, kind, amount, oid in s.ledger:
        good = amount > 0 if kind == "deposit" else amount <= 0 if kind == "payment" else amount >= 0
        ch.ok(good, f"ledger {kind} {amount} of {u} / {oid}")
    return ch


def check_participants(s, c):
    ch = Check("participants agree: product-svc and user-svc per-order state vs the order")
    for oid, o in s.orders.items():
        ps = s.order_states.get(oid)
        pay = s.payments.get(oid)
        if o["status"] == "CONFIRMED":
            ch.ok(ps == "COMMITTED" and pay is not None and pay[0] == "CHARGED"
                  and pay[1] == o["total"],
                  f"order {oid} CONFIRMED: product-svc {ps}, user-svc {pay}")
        elif o["status"] == "CANCELLED":
            ch.ok(ps in ("RELEASED", "TOMBSTONE")
                  and pay is not None and pay[0] in ("FAILED", "REFUNDED", "TOMBSTONE"),
                  f"order {oid} CANCELLED {o['reason']}: product-svc {ps}, user-svc {pay}")
    return ch


def check_timeline(s, c):
    ch = Check("timeline: each transition once, seq 1..n")
    for oid, o in s.orders.items():
        rows = s.timeline.get(oid, [])
        steps = Counter(step for _, step in rows)
        confirmed = o["status"] == "CONFIRMED" or o["reason"] == "USER_REQUESTED"
        ch.ok([seq for seq, _ in rows] == list(range(1, len(rows) + 1))
              and steps["order_created"] == 1
              and steps["order_confirmed"] == (1 if confirmed else 0)
              and steps["order_cancelled"] == (1 if o["status"] == "CANCELLED" else 0),
              f"order {oid} {o['status']} {o['reason']}: timeline {rows}")
    return ch


def check_user_cancels(s, c):
    ch = Check("USER_REQUESTED = exactly the orders the users cancelled")
    db = {oid for oid, o in s.orders.items() if o["reason"] == "USER_REQUESTED"}
    mine = set(c["user_cancelled"])
    for oid in db | mine:
        ch.ok(oid in db and oid in mine,
              f"order {oid}: USER_REQUESTED in db {oid in db}, cancelled by the client {oid in mine}")
    return ch


def check_outboxes(s, c):
    ch = Check("outboxes drained (no unpublished row)")
    for svc, n in s.unpublished.items():
        ch.ok(n == 0, f"{svc} outbox: {n} unpublished")
    return ch


def check_lag(s, c):
    ch = Check("consumer lag 0 in every group")
    for g in CONSUMER_GROUPS:
        ch.ok(g in s.lag, f"no consumer group {g}")
    for g, n in s.lag.items():
        ch.ok(n == 0, f"group {g}: lag {n}")
    return ch


def check_dlq(s, c):
    ch = Check("DLQ topics empty")
    for t, n in s.dlq.items():
        ch.ok(n == 0, f"{t}: {n} messages")
    return ch


def _by_order(msgs):
    """{order id: [(offset, type, ce_id)]} in offset order (an order's events share
    one partition: the key is the order id)."""
    out = defaultdict(list)
    for key, _, offset, h in sorted(msgs, key=lambda m: (m[1], m[2])):
        out[key].append((offset, h.get("ce_type", "").rsplit(".", 1)[-1], h.get("ce_id")))
    return out


def check_order_events(s, c):
    ch = Check("order.events: per order Created < [Confirmed] < [Cancelled], each once")
    events = _by_order(s.events["order.events"])
    for oid, o in s.orders.items():
        evs = events.get(oid, [])
        ids = defaultdict(set)
        first = []
        for _, t, ce in evs:
            ids[t].add(ce)
            if t not in first:
                first.append(t)
        want = ["OrderCreated"]
        if o["status"] == "CONFIRMED" or o["reason"] == "USER_REQUESTED":
            want.append("OrderConfirmed")
        if o["status"] == "CANCELLED":
            want.append("OrderCancelled")
        ch.ok(first == want and all(len(v) == 1 for v in ids.values()),
              f"order {oid} {o['status']} {o['reason']}: {[(t, ce) for _, t, ce in evs]}")
    for oid in events:
        ch.ok(oid in s.orders, f"order.events has events of unknown order {oid}")
    return ch


def check_effect_events(s, c):
    ch = Check("inventory/payment events: one ce_id per order and step, one outcome each")
    for topic, pairs in (("inventory.events", [("StockReserved", "StockRejected")]),
                         ("payment.events", [("PaymentCompleted", "PaymentFailed")])):
        for oid, evs in _by_order(s.events[topic]).items():
            ids = defaultdict(set)
            for _, t, ce in evs:
                ids[t].add(ce)
            good = all(len(v) == 1 for v in ids.values())
            for a, b in pairs:
                good = good and not (ids[a] and ids[b])
            ch.ok(good and oid in s.orders, f"{topic} order {oid}: "
                                            f"{ {t: len(v) for t, v in ids.items()} }")
    return ch
