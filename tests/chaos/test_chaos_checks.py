#!/usr/bin/env python3
"""The chaos checks against hand-made snapshots: a consistent world passes every
check, and each kind of damage a fault could do is caught by the check meant for it
(a checker that cannot fail proves nothing). No stack needed."""

import copy
import os
import random
import sys
import unittest
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos_checks  # noqa: E402
import chaos_faults  # noqa: E402

U1, U2 = "u1", "u2"
P1, P2 = "p1", "p2"


def ev(key, p, off, t, ce):
    return (key, p, off, {"ce_type": f"shop.events.v1.{t}", "ce_id": ce})


def world():
    """Three orders of two users over two products, settled: o1 CONFIRMED (3 of p1 at
    100), o2 CANCELLED PAYMENT_FAILED (1 of p2), o3 CONFIRMED then USER_REQUESTED (2 of
    p2 at 50). u1 deposited 1000 and paid o1; u2 deposited 500, paid o3 and got it back."""
    s = chaos_checks.Snapshot.__new__(chaos_checks.Snapshot)
    s.orders = {
        "o1": {"user": U1, "status": "CONFIRMED", "reason": "", "total": 300},
        "o2": {"user": U1, "status": "CANCELLED", "reason": "PAYMENT_FAILED", "total": 900},
        "o3": {"user": U2, "status": "CANCELLED", "reason": "USER_REQUESTED", "total": 100},
    }
    s.lines = defaultdict(dict, {"o1": {P1: 3}, "o2": {P2: 1}, "o3": {P2: 2}})
    s.keys = {(U1, "k1"): "o1", (U1, "k2"): "o2", (U2, "k3"): "o3"}
    s.timeline = defaultdict(list, {
        "o1": [(1, "order_created"), (2, "stock_reserved"), (3, "payment_completed"),
               (4, "order_confirmed"), (5, "stock_committed")],
        "o2": [(1, "order_created"), (2, "stock_reserved"), (3, "payment_failed"),
               (4, "order_cancelled"), (5, "stock_released")],
        "o3": [(1, "order_created"), (2, "order_confirmed"), (3, "order_cancelled")],
    })
    s.inventory = {P1: (7, 0, 3, 10), P2: (5, 0, 0, 5)}
    s.reservations = defaultdict(dict, {"o1": {P1: (3, "COMMITTED")},
                                        "o2": {P2: (1, "RELEASED")},
                                        "o3": {P2: (2, "RELEASED")}})
    s.order_states = {"o1": "COMMITTED", "o2": "RELEASED", "o3": "RELEASED"}
    s.wallets = {U1: 700, U2: 500}
    s.ledger = [(U1, "deposit", 1000, ""), (U1, "payment", -300, "o1"),
                (U2, "deposit", 500, ""), (U2, "payment", -100, "o3"), (U2, "refund", 100, "o3")]
    s.payments = {"o1": ("CHARGED", 300), "o2": ("FAILED", 900), "o3": ("REFUNDED", 100)}
    s.unpublished = {"order": 0, "product": 0, "user": 0}
    s.lag = {"order-svc": 0, "product-svc": 0, "user-svc": 0}
    s.dlq = {t: 0 for t in chaos_checks.DLQ_TOPICS}
    s.events = {
        "order.events": [ev("o1", 0, 0, "OrderCreated", "a"), ev("o1", 0, 1, "OrderConfirmed", "b"),
                         ev("o2", 1, 0, "OrderCreated", "c"), ev("o2", 1, 1, "OrderCancelled", "d"),
                         ev("o3", 2, 0, "OrderCreated", "e"),
                         ev("o3", 2, 1, "OrderConfirmed", "f"),
                         ev("o3", 2, 2, "OrderConfirmed", "f"),  # a redelivery: same ce_id
                         ev("o3", 2, 3, "OrderCancelled", "g")],
        "inventory.events": [ev("o1", 0, 0, "StockReserved", "h"),
                             ev("o2", 1, 0, "StockReserved", "i")],
        "payment.events": [ev("o1", 0, 0, "PaymentCompleted", "j"),
                           ev("o2", 1, 0, "PaymentFailed", "k")],
    }
    client = {
        "orders": [{"i": 0, "user": U1, "key": "k1", "order_id": "o1"},
                   {"i": 1, "user": U1, "key": "k2", "order_id": "o2"},
                   {"i": 2, "user": U2, "key": "k3", "order_id": "o3"}],
        "deposits": {U1: 1000, U2: 500},
        "stock": {P1: 10, P2: 5},
        "user_cancelled": ["o3"],
    }
    return s, client


def failed(s, client):
    return {c.name for c in chaos_checks.run_checks(s, client) if not c.passed}


def named(fragment):
    return next(c.name for c in chaos_checks.run_checks(*world()) if fragment in c.name)


class ChaosChecks(unittest.TestCase):
    def assert_caught(self, fragment, damage):
        s, client = world()
        damage(s, client)
        self.assertIn(named(fragment), failed(s, client))

    def test_consistent_world_passes_every_check(self):
        self.assertEqual(failed(*world()), set())

    def test_pending_order_is_caught(self):
        self.assert_caught("every order terminal",
                           lambda s, c: s.orders["o1"].update(status="PENDING"))

    def test_order_made_twice_for_one_key_is_caught(self):
        def damage(s, c):
            s.orders["o4"] = copy.deepcopy(s.orders["o2"])
            s.keys[(U1, "k1")] = "o4"
        self.assert_caught("Idempotency-Key", damage)

    def test_double_charge_is_caught(self):
        def damage(s, c):
            s.ledger.append((U1, "payment", -300, "o1"))
            s.wallets[U1] -= 300
        self.assert_caught("<= 1 payment", damage)
        self.assert_caught("charged net total", damage)
        self.assert_caught("wallet balance", damage)

    def test_missing_refund_is_caught(self):
        def damage(s, c):
            s.ledger.pop()
            s.wallets[U2] -= 100
        self.assert_caught("charged net total", damage)
        self.assert_caught("wallet balance", damage)

    def test_reservation_left_held_is_caught(self):
        def damage(s, c):
            s.reservations["o2"][P2] = (1, "RESERVED")
            s.inventory[P2] = (4, 1, 0, 5)
        self.assert_caught("nothing reserved at rest", damage)
        self.assert_caught("reservations per order", damage)

    def test_restock_applied_twice_is_caught(self):
        self.assert_caught("stock put in", lambda s, c: s.inventory.update({P2: (7, 0, 0, 7)}))

    def test_sale_of_cancelled_order_is_caught(self):
        def damage(s, c):
            s.reservations["o3"][P2] = (2, "COMMITTED")
            s.inventory[P2] = (3, 0, 2, 5)
        self.assert_caught("sold = quantities", damage)

    def test_unpublished_outbox_row_and_dead_letter_are_caught(self):
        self.assert_caught("outboxes drained", lambda s, c: s.unpublished.update(user=1))
        self.assert_caught("DLQ", lambda s, c: s.dlq.update({"payment.events.dlq": 1}))
        self.assert_caught("consumer lag", lambda s, c: s.lag.update({"user-svc": 3}))

    def test_event_emitted_twice_under_new_ids_is_caught(self):
        self.assert_caught("order.events", lambda s, c: s.events["order.events"].append(
            ev("o1", 0, 2, "OrderConfirmed", "z")))
        self.assert_caught("one ce_id per order", lambda s, c: s.events["payment.events"].append(
            ev("o1", 0, 1, "PaymentCompleted", "y")))

    def test_events_out_of_order_are_caught(self):
        def damage(s, c):
            s.events["order.events"][0:2] = [ev("o1", 0, 0, "OrderConfirmed", "b"),
                                              ev("o1", 0, 1, "OrderCreated", "a")]
        self.assert_caught("order.events", damage)

    def test_participant_disagreeing_is_caught(self):
        self.assert_caught("participants agree",
                           lambda s, c: s.payments.update(o2=("CHARGED", 900)))

    def test_transition_recorded_twice_is_caught(self):
        self.assert_caught("timeline", lambda s, c: s.timeline["o1"].append(
            (6, "order_confirmed")))

    def test_cancel_the_user_did_not_ask_for_is_caught(self):
        self.assert_caught("USER_REQUESTED", lambda s, c: c.update(user_cancelled=[]))


class FaultPlanTest(unittest.TestCase):
    """The fault plan names real parts: on one node the parts themselves, on the HA
    topology every Kafka node in turn and the roles (a database's primary, the Redis
    master) that are resolved when the fault fires."""

    SINGLE = ["postgres/order", "postgres/product", "postgres/user", "redis", "kafka",
              "order-svc-1", "order-svc-2", "product-svc-1", "user-svc-1", "gateway"]
    HA = ["pg-monitor", "postgres/order/1", "postgres/order/2", "postgres/product/1",
          "postgres/product/2", "postgres/user/1", "postgres/user/2", "redis/1", "redis/2",
          "sentinel/1", "sentinel/2", "sentinel/3", "kafka/1", "kafka/2", "kafka/3",
          "order-svc-1", "order-svc-2", "product-svc-1", "user-svc-1", "gateway"]

    def plan(self, parts, ha, kinds):
        return chaos_faults.plan_faults(random.Random(7), 2 * len(kinds), kinds, parts, ha)

    def test_single_node_kinds_hit_existing_parts(self):
        kinds = chaos_faults.DEFAULT_KINDS[False]
        self.assertIn("redis", kinds)
        self.assertNotIn("freeze", kinds)
        plan = self.plan(self.SINGLE, False, kinds)
        self.assertEqual({k for k, _ in plan}, set(kinds))
        for kind, part in plan:
            self.assertIn(part, self.SINGLE, kind)

    def test_ha_kinds_rotate_over_nodes_and_name_roles(self):
        kinds = chaos_faults.DEFAULT_KINDS[True]
        plan = self.plan(self.HA, True, kinds)
        by = defaultdict(list)
        for kind, part in plan:
            by[kind].append(part)
        self.assertEqual(set(by), set(kinds))
        self.assertEqual(len(set(by["kafka"])), len(by["kafka"]), "a Kafka node hit twice")
        self.assertTrue(all(p.startswith("kafka/") for p in by["kafka"]))
        self.assertTrue(all(p.startswith(chaos_faults.PRIMARY_OF) for p in by["postgres"]))
        self.assertEqual(set(by["redis"]), {chaos_faults.REDIS_MASTER})
        self.assertTrue(all(p in self.HA for p in by["freeze"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
