"""Where the time went, from the programs' own histograms and the outbox rows.

A snapshot of every histogram's _sum and _count before and after a run gives the mean of
what was observed during it (gateway request, its gRPC call, the handler, each SQL
statement, each consumer's event). The saga's hops come from the timestamps the fleet
writes anyway: the order's insert, and each outbox row's creation and relay mark.
"""

import re
import urllib.request

from .cpu import SERVICES
from .util import jround, psql

_HISTO = re.compile(r"^([a-z_]+_(?:sum|count)(?:\{[^ ]*\})?) (\S+)")
READ_ROUTE = '{route="/api/v1/products/{id}"}'
GET_PRODUCT = '{method="/shop.product.v1.ProductService/GetProduct"}'
ORDERS_ROUTE = '{route="/api/v1/orders"}'
CREATE_ORDER = '{method="/shop.order.v1.OrderService/CreateOrder"}'
BATCH_GET = '{method="/shop.product.v1.ProductService/BatchGetProducts"}'
HOP_TYPES = ("created", "OrderCreated", "StockReserved", "PaymentCompleted", "OrderConfirmed")


def _fetch(url: str) -> str:
    """A /metrics page, or nothing: a missing breakdown is null, never a failure."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def metrics_snap(ctx) -> dict:
    """Every histogram _sum/_count of the gateway and of each service's first instance,
    keyed by (program, metric with labels)."""
    pages = {"gateway": ctx.gateway_url + "/metrics"}
    for svc in SERVICES:
        pages[f"{svc}-svc"] = f"http://{ctx.stack.first_addr(svc, 'ADMIN')}/metrics"
    snap = {}
    for program, url in pages.items():
        for line in _fetch(url).splitlines():
            m = _HISTO.match(line)
            if m:
                snap[(program, m.group(1))] = float(m.group(2))
    return snap


def mean_us(before: dict, after: dict, program: str, metric: str, labels: str = ""):
    """The mean of the histogram's observations between two snapshots, in us (None if
    none were made)."""
    def diff(suffix):
        key = (program, f"{metric}_{suffix}{labels}")
        return after.get(key, 0.0) - before.get(key, 0.0)
    n = diff("count")
    return jround(diff("sum") / n * 1e6, 1) if n > 0 else None


def breakdown_read(a: dict, b: dict) -> dict:
    """Where a GET /products/{id} spends its time over the fixed-rate run (means, us)."""
    return {"gateway_request": mean_us(a, b, "gateway", "http_request_duration_seconds", READ_ROUTE),
            "gateway_grpc_call": mean_us(a, b, "gateway", "rpc_client_duration_seconds", GET_PRODUCT),
            "product_svc_handler": mean_us(a, b, "product-svc", "rpc_server_duration_seconds",
                                           GET_PRODUCT),
            "product_svc_sql_statement": mean_us(a, b, "product-svc", "db_query_duration_seconds")}


def _request_path(a: dict, b: dict) -> dict:
    """POST /orders from the gateway down to the pricing call (means, us)."""
    return {"gateway_request": mean_us(a, b, "gateway", "http_request_duration_seconds", ORDERS_ROUTE),
            "gateway_grpc_call": mean_us(a, b, "gateway", "rpc_client_duration_seconds", CREATE_ORDER),
            "order_svc_create_order": mean_us(a, b, "order-svc", "rpc_server_duration_seconds",
                                              CREATE_ORDER),
            "order_svc_batch_get_products": mean_us(a, b, "order-svc", "rpc_client_duration_seconds",
                                                    BATCH_GET)}


def _event_handling(a: dict, b: dict) -> dict:
    """Each consumer's handling of one event (means, us)."""
    def ev(program, topic):
        return mean_us(a, b, program, "kafka_event_duration_seconds", f'{{topic="{topic}"}}')
    return {"product-svc order.events": ev("product-svc", "order.events"),
            "user-svc inventory.events": ev("user-svc", "inventory.events"),
            "order-svc inventory.events": ev("order-svc", "inventory.events"),
            "order-svc payment.events": ev("order-svc", "payment.events")}


def _hop_rows(stack, since: float) -> list:
    """(order id, type, created epoch, relayed epoch or 0): the orders inserted since,
    and every outbox row written since, on the three databases."""
    at = f"to_timestamp({since:.6f})"
    queries = [(stack.url("order"), "SELECT id, 'created', extract(epoch FROM created_at), 0 "
                                    f"FROM orders WHERE created_at >= {at}")]
    queries += [(stack.url(svc), "SELECT key, substr(ce_type, 16), extract(epoch FROM created_at), "
                                 "coalesce(extract(epoch FROM published_at), 0) "
                                 f"FROM outbox WHERE created_at >= {at}") for svc in SERVICES]
    rows = []
    for url, sql in queries:
        for line in (psql(url, sql, sep=" ") or "").splitlines():
            k, t, c, p = line.split(" ")
            rows.append((k, t, float(c), float(p)))
    return rows


def _median_ms(values: list):
    """The median (upper for an even count) of seconds, in ms with one decimal."""
    values = sorted(values)
    return jround(values[len(values) // 2] * 1000, 1) if values else None


# Each hop: (label, (type, 0 = created | 1 = relayed) it starts at, ... it ends at).
C, R = 0, 1
HOPS = (
    ("1 order-svc: insert → OrderCreated relayed", ("created", C), ("OrderCreated", R)),
    ("2 → product-svc transaction starts", ("OrderCreated", R), ("StockReserved", C)),
    ("3 product-svc: reserve → StockReserved relayed", ("StockReserved", C), ("StockReserved", R)),
    ("4 → user-svc transaction starts", ("StockReserved", R), ("PaymentCompleted", C)),
    ("5 user-svc: debit → PaymentCompleted relayed", ("PaymentCompleted", C), ("PaymentCompleted", R)),
    ("6 → order-svc transaction starts", ("PaymentCompleted", R), ("OrderConfirmed", C)),
    ("7 order-svc: confirm → OrderConfirmed relayed", ("OrderConfirmed", C), ("OrderConfirmed", R)),
    ("insert → OrderConfirmed relayed", ("created", C), ("OrderConfirmed", R)),
)


def hops(stack, since: float) -> dict:
    """Each hop of the saga, median over the run's orders that went all the way (ms). A
    hop "relayed" ends when the relay, holding the broker's acknowledgement, marks the
    row; "transaction starts" is the next participant's outbox row's creation."""
    by_order = {}
    for k, t, c, p in _hop_rows(stack, since):
        by_order.setdefault(k, {})[t] = (c, p)
    full = [o for o in by_order.values()
            if all(t in o for t in HOP_TYPES) and o["OrderConfirmed"][R] > 0]
    out = {"orders": len(full)}
    for label, (t0, i0), (t1, i1) in HOPS:
        out[label] = _median_ms([o[t1][i1] - o[t0][i0] for o in full])
    return out


def breakdown_saga(ctx, a: dict, b: dict, since: float) -> None:
    """Where an order spends its time over the half-peak run: saga.breakdown."""
    put = ctx.results.put
    put("saga.breakdown.request_mean_us", _request_path(a, b))
    put("saga.breakdown.event_handling_mean_us", _event_handling(a, b))
    put("saga.breakdown.hops_median_ms", hops(ctx.stack, since))
