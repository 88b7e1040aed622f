#!/usr/bin/python3
"""Traces end to end (issue 19): spans of all four programs in a real Jaeger.

    test_gateway_trace.py -- PROGRAM...   (every program of deploy/fleet.conf)

Needs the test stack's OTEL_EXPORTER_OTLP_ENDPOINT (Jaeger's OTLP/gRPC receiver) and
TRACE_QUERY_URL (Jaeger's /api/traces) in the environment (deploy/local/stack.sh env).
Starts the three services and a gateway exporting there (gateway_stack.py) and checks:
  - one order through the REST API, sent with a known traceparent, yields one trace
    whose root is the gateway's SERVER span with the client's span as parent, and
    whose spans come from gateway, order-svc, product-svc and user-svc;
  - the chain follows the saga (docs/architecture.md §4): gateway SERVER → CLIENT →
    order-svc SERVER → send order.events → product-svc process → send
    inventory.events → user-svc process → send payment.events → order-svc process →
    send order.events → product-svc process;
  - every span's parent is in the trace, no two spans share an id, and every
    process carries service.instance.id and service.version;
  - a gateway exporting to a dead endpoint answers as fast as ever, and counts the
    spans it drops (otel_spans_dropped_total).
"""
import json
import os
import secrets
import statistics
import sys
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_stack  # noqa: E402

STACK = None
GW = None
TAG = uuid.uuid4().hex[:8]
PASSWORD = "correct horse battery staple"
QUERY_URL = os.environ.get("TRACE_QUERY_URL", "")
TOKENS = {}


def login(name, admin=False):
    if name not in TOKENS:
        em = "%s-%s@trace.test" % (name, TAG)
        if admin:
            STACK.create_admin(em, PASSWORD)
        else:
            r = GW.post("/api/v1/auth/register", {"email": em, "password": PASSWORD,
                                                   "display_name": name})
            assert r.status == 201, r
        r = GW.post("/api/v1/auth/login", {"email": em, "password": PASSWORD})
        assert r.status == 200, r
        TOKENS[name] = r.json["access_token"]
    return TOKENS[name]


def new_product():
    t = login("admin", admin=True)
    r = GW.post("/api/v1/products", {"sku": "TR-%s-%s" % (TAG, uuid.uuid4().hex[:6]),
                                     "name": "traced thing", "price_cents": 300}, token=t)
    assert r.status == 201, r
    p = r.json
    r = GW.request("PUT", "/api/v1/products/%s/stock" % p["id"], {"available": 10}, token=t)
    assert r.status == 200, r
    return p


def fetch_trace(trace_id):
    try:
        with urllib.request.urlopen("%s/%s" % (QUERY_URL, trace_id), timeout=10) as r:
            return json.loads(r.read())
    except OSError:
        return None


def tag(tags, key):
    for t in tags:
        if t["key"] == key:
            return t["value"]
    return None


class Span:
    def __init__(self, raw, processes):
        self.id = raw["spanID"]
        self.name = raw["operationName"]
        self.service = processes[raw["processID"]]["serviceName"]
        self.kind = tag(raw["tags"], "span.kind")
        self.event = tag(raw["tags"], "cloudevents.event_type")
        self.parent = next((r["spanID"] for r in raw.get("references", [])
                            if r["refType"] == "CHILD_OF"), None)

    def __repr__(self):
        return "%s %s/%s %s" % (self.service, self.kind, self.name, self.event or "")


def spans_of(doc):
    t = doc["data"][0]
    return [Span(s, t["processes"]) for s in t["spans"]]


def find(spans, service, kind, name, event=None, parent=None):
    """The spans that match; parent=Span demands it as the parent."""
    return [s for s in spans if s.service == service and s.kind == kind and s.name == name
            and (event is None or s.event == event)
            and (parent is None or s.parent == parent.id)]


def complete(doc):
    """The last hop of the saga's happy path is in (product-svc's OrderConfirmed),
    and every span's parent but the root's (each program exports on its own)."""
    if not doc or not doc.get("data"):
        return False
    spans = spans_of(doc)
    ids = {s.id for s in spans}
    return (bool(find(spans, "product-svc", "consumer", "process order.events",
                      "shop.events.v1.OrderConfirmed"))
            and sum(1 for s in spans if s.parent not in ids) == 1)


class TraceTest(unittest.TestCase):
    def one(self, spans, *args, **kw):
        got = find(spans, *args, **kw)
        self.assertEqual(len(got), 1, "want one %s %s; spans: %s" % (args, kw, spans))
        return got[0]

    def test_one_order_is_one_trace_across_the_fleet(self):
        t = login("buyer")
        p = new_product()
        r = GW.post("/api/v1/users/me/wallet/deposits", {"amount_cents": 5000}, token=t,
                    headers={"Idempotency-Key": str(uuid.uuid4())})
        self.assertEqual(r.status, 201, r)
        trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
        r = GW.post("/api/v1/orders", {"lines": [{"product_id": p["id"], "quantity": 2}]},
                    token=t, headers={"Idempotency-Key": str(uuid.uuid4()),
                                      "traceparent": "00-%s-%s-01" % (trace_id, client_span)})
        self.assertEqual(r.status, 202, r)
        oid = r.json["id"]
        deadline = time.time() + 30
        while GW.get("/api/v1/orders/" + oid, token=t).json["status"] == "pending":
            self.assertLess(time.time(), deadline, "order still pending")
            time.sleep(0.2)
        self.assertEqual(GW.get("/api/v1/orders/" + oid, token=t).json["status"], "confirmed")

        deadline = time.time() + 30
        doc = fetch_trace(trace_id)
        while not complete(doc) and time.time() < deadline:
            time.sleep(0.5)
            doc = fetch_trace(trace_id)
        self.assertTrue(doc and doc.get("data"), "trace %s not found in Jaeger" % trace_id)
        self.assertEqual(len(doc["data"]), 1)
        self.assertEqual(doc["data"][0]["traceID"], trace_id)
        spans = spans_of(doc)
        self.assertTrue(complete(doc), "trace incomplete: %s" % spans)

        self.assertEqual({s.service for s in spans},
                         {"gateway", "order-svc", "product-svc", "user-svc"})
        ids = [s.id for s in spans]
        self.assertEqual(len(ids), len(set(ids)), "span ids repeat: %s" % spans)
        roots = [s for s in spans if s.parent not in ids]
        self.assertEqual(len(roots), 1, "more than one root: %s" % roots)
        for s in spans:
            self.assertIsNotNone(s.parent, "%s has no parent" % s)

        # The REST request and its RPC.
        root = self.one(spans, "gateway", "server", "POST /api/v1/orders")
        self.assertEqual(roots[0].id, root.id)
        self.assertEqual(root.parent, client_span)
        create = "shop.order.v1.OrderService/CreateOrder"
        call = self.one(spans, "gateway", "client", create, parent=root)
        served = self.one(spans, "order-svc", "server", create, parent=call)
        pricing = self.one(spans, "order-svc", "client",
                           "shop.product.v1.ProductService/BatchGetProducts", parent=served)
        self.one(spans, "product-svc", "server",
                 "shop.product.v1.ProductService/BatchGetProducts", parent=pricing)
        self.assertTrue(find(spans, "order-svc", "client", "db.txn", parent=served))

        # The saga: each publish is a child of the span that wrote the event, each
        # consumer a child of the publish.
        hop = served
        for svc, topic, consumer, event in [
                ("order-svc", "order.events", "product-svc", "OrderCreated"),
                ("product-svc", "inventory.events", "user-svc", "StockReserved"),
                ("user-svc", "payment.events", "order-svc", "PaymentCompleted"),
                ("order-svc", "order.events", "product-svc", "OrderConfirmed")]:
            sent = self.one(spans, svc, "producer", "send " + topic, parent=hop)
            hop = self.one(spans, consumer, "consumer", "process " + topic,
                           "shop.events.v1." + event, parent=sent)

        for pid, proc in doc["data"][0]["processes"].items():
            keys = {t["key"] for t in proc["tags"]}
            self.assertIn("service.instance.id", keys, proc)
            self.assertIn("service.version", keys, proc)

    def test_a_dead_receiver_does_not_slow_requests(self):
        p = new_product()
        port = gateway_stack.free_port()  # nothing listens there
        gw = STACK.start_gateway("deadexport", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:%d" % port,
                                 OTEL_BSP_MAX_QUEUE_SIZE=16, OTEL_BSP_MAX_EXPORT_BATCH_SIZE=8,
                                 OTEL_TRACES_SAMPLER="always_on")

        def timed(client):
            t0 = time.perf_counter()
            r = client.get("/api/v1/products/" + p["id"])
            self.assertEqual(r.status, 200, r)
            return time.perf_counter() - t0

        first = [timed(gw) for _ in range(60)]
        for _ in range(200):
            timed(gw)
        last = [timed(gw) for _ in range(60)]
        healthy = [timed(GW) for _ in range(60)]
        m_first, m_last, m_ok = (statistics.median(x) for x in (first, last, healthy))
        # Each request waits for nothing of the export: as fast as at first, and
        # as fast as a gateway whose receiver answers (margins for a shared machine).
        self.assertLess(m_last, 2 * m_first + 0.005, (m_first, m_last))
        self.assertLess(m_last, 2 * m_ok + 0.005, (m_ok, m_last))
        metrics = gw.get("/metrics").raw.decode()
        dropped = [float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("otel_spans_dropped_total")]
        self.assertTrue(dropped and dropped[0] > 0, "no drops counted")
        self.assertEqual(STACK.stop_gateway("deadexport"), 0)


if __name__ == "__main__":
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "TRACE_QUERY_URL"):
        if not os.environ.get(var):
            raise SystemExit("%s is not set: run with the test stack's env "
                             "(deploy/local/stack.sh env)" % var)
    # Spans reach Jaeger within a fraction of a second, so the poll is short.
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    os.environ.pop("OTEL_TRACES_SAMPLER", None)
    gateway_stack.main_for(globals())
