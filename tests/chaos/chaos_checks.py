"""Quiescence, then every invariant of docs/architecture.md §4 (chaos_invariants.py), read
directly from the services' databases and the Kafka topics (never through the
services' APIs).

The stack is private to the run (wiped at its start), so every row and every message
belongs to the run; the client's own records (order ids, idempotency keys, deposits,
seeded stock, cancellations) are compared with them.
"""

import time
from collections import defaultdict

import chaos_invariants as inv
from chaos_invariants import Check  # noqa: F401  (chaos.py's name)
from chaos_stack import DLQ_TOPICS, SAGA_TOPICS, SERVICES, StackError

def quiesce(stack, timeout, log):
    """Waits until no order is PENDING, every outbox is drained and no consumer group
    lags. Returns (seconds taken or None on timeout, last state seen)."""
    t0 = time.monotonic()
    state = {}
    while True:
        try:
            state = {"pending": stack.scalar("order",
                                             "SELECT count(*) FROM orders WHERE status = 'PENDING'")}
            for svc in (r.name for r in SERVICES):
                state[f"{svc}_outbox"] = stack.scalar(
                    svc, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if not any(state.values()):
                state["lag"] = stack.consumer_lag()
                if not any(state["lag"].values()):
                    return round(time.monotonic() - t0, 1), state
        except StackError as e:  # a server still recovering: ask again
            state = {"error": str(e)}
        if time.monotonic() - t0 >= timeout:
            return None, state
        log(f"quiescence: waiting ({state})")
        time.sleep(2)


class Snapshot:
    """Everything the checks read, fetched once after quiescence."""

    def __init__(self, stack):
        q = stack.query
        self.orders = {r[0]: {"user": r[1], "status": r[2], "reason": r[3], "total": int(r[4]),
                              "created": float(r[5])}
                       for r in q("order", "SELECT id, user_id, status, coalesce(cancel_reason, ''),"
                                           " total_cents, extract(epoch FROM created_at)"
                                           " FROM orders")}
        self.lines = defaultdict(dict)
        for o, p, n in q("order", "SELECT order_id, product_id, quantity FROM order_lines"):
            self.lines[o][p] = int(n)
        self.keys = {(u, k): o for u, k, o in
                     q("order", "SELECT user_id, key, order_id FROM idempotency_keys")}
        self.timeline = defaultdict(list)
        for o, seq, step in q("order", "SELECT order_id, seq, step FROM order_timeline"
                                       " ORDER BY order_id, seq"):
            self.timeline[o].append((int(seq), step))
        self.inventory = {r[0]: tuple(int(x) for x in r[1:]) for r in
                          q("product", "SELECT product_id, available, reserved, sold, added"
                                       " FROM inventory")}
        self.reservations = defaultdict(dict)
        for o, p, n, st in q("product", "SELECT order_id, product_id, quantity, state"
                                        " FROM reservations"):
            self.reservations[o][p] = (int(n), st)
        self.order_states = dict(q("product", "SELECT order_id, state FROM order_states"))
        self.wallets = {u: int(b) for u, b in q("user", "SELECT user_id, balance_cents FROM wallets")}
        self.ledger = [(u, kind, int(a), o) for u, kind, a, o in
                       q("user", "SELECT user_id, kind, amount_cents, coalesce(order_id::text, '')"
                                 " FROM ledger")]
        self.payments = {o: (st, int(a)) for o, st, a in
                         q("user", "SELECT order_id, state, amount_cents FROM order_payments")}
        self.unpublished = {svc: stack.scalar(svc, "SELECT count(*) FROM outbox"
                                                   " WHERE published_at IS NULL")
                            for svc in (r.name for r in SERVICES)}
        self.lag = stack.consumer_lag()
        self.dlq = {t: stack.topic_count(t) for t in DLQ_TOPICS}
        self.events = {t: stack.topic_messages(t) for t in SAGA_TOPICS}


def run_checks(snap, client):
    """Every invariant, as a list of Check. client: the run's own records (dict with
    orders, deposits, products, user_cancelled)."""
    return [f(snap, client) for f in (
        inv.check_terminal, inv.check_orders_match_client, inv.check_wallets,
        inv.check_order_charges, inv.check_ledger_once, inv.check_stock_conserved,
        inv.check_stock_at_rest, inv.check_stock_sold, inv.check_reservations,
        inv.check_non_negative, inv.check_participants, inv.check_timeline,
        inv.check_user_cancels, inv.check_outboxes, inv.check_lag, inv.check_dlq,
        inv.check_order_events, inv.check_effect_events)]
