#!/usr/bin/env python3
"""Writes the committed seed corpora of tests/fuzz (corpus/<target>/), so what each
seed is stays readable here: python3 tests/fuzz/make_seeds.py rewrites them all.

Seeds are the starting points libFuzzer mutates: one valid input of every shape a
target knows, plus the near misses that reach the refusals. Inputs the fuzzer found
that once failed go to regressions/<target>/ instead, by hand (docs/fuzzing.md).
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
UUID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
UUID2 = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6c"
TIME = "2026-11-24T19:00:00.123456Z"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# ---- protobuf wire format, just enough for the seeds ----

def varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f_int(num, n):
    return varint(num << 3) + varint(n)


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


# ---- targets ----

def json_pb():
    # First byte: the case of fuzz_json_pb.c's table ('a' + index).
    req = {
        "a_register": 'a{"email":"ann@example.com","password":"correct horse battery","display_name":"Ann"}',
        "b_login": 'b{"email":"ann@example.com","password":"correct horse battery"}',
        "c_refresh": 'c{"refresh_token":"rt.0123456789"}',
        "d_empty": "d{}",
        "e_order": 'e{"lines":[{"product_id":"%s","quantity":2},{"product_id":"%s","quantity":1}]}' % (UUID, UUID2),
        "e_order_denied": 'e{"user_id":"x","idempotency_key":"k","lines":[]}',
        "f_product": 'f{"sku":"MUG-1","name":"Mug","description":"a mug","price_cents":1200,"currency":"USD"}',
        "g_patch": 'g{"name":"Big mug","active":false,"price_cents":1500}',
        "h_stock": 'h{"available":10}',
        "i_profile": 'i{"display_name":"Ann","phone":"+1 555 0100","shipping_address":{"line1":"1 Main St","line2":"","city":"Springfield","region":"IL","postal_code":"62701","country":"US"}}',
        "i_profile_null_address": 'i{"shipping_address":null}',
        "j_preferences": 'j{"language":"en","currency":"EUR","marketing_opt_in":true}',
        "k_deposit": 'k{"amount_cents":5000}',
        "l_scalars": 'l{"u32":4294967295,"u64":9223372036854775807,"ratio":0.25,"weight":-1.5,"text":"t","flags":[true,false,true]}',
        "l_scalars_number": 'l{"number":-9223372036854775808,"u32":0}',
        "l_oneof_twice": 'l{"text":"t","number":1}',
        "l_bytes": 'l{"blob":"AAAA"}',
        "m_tree": 'm{"name":"root","child":{"name":"c","child":{"name":"cc"}},"children":[{"name":"a"},{"name":"b","child":null}]}',
        "m_unicode": 'm{"name":"caf\\u00e9 \\ud83d\\ude00 \xc3\xa9"}',
        "e_malformed": 'e{"lines":[{"product_id":',
        "e_duplicate": 'e{"lines":[],"lines":[]}',
        "a_wrong_types": 'a{"email":5,"password":true,"display_name":[1],"extra":{}}',
        "l_fraction": 'l{"u32":1.5,"u64":-1,"ratio":"x","weight":1e400}',
    }
    files = {k: v.encode("latin-1") if "\xc3" in v else v.encode() for k, v in req.items()}
    line = f_bytes(1, UUID) + f_int(2, 2) + f_int(3, 1200) + f_int(4, 2400)
    timeline = f_bytes(1, "created") + f_int(2, 1) + f_bytes(3, "") + f_bytes(4, TIME)
    order = (f_bytes(1, UUID) + f_bytes(2, UUID2) + f_bytes(3, line) + f_int(4, 2400) +
             f_bytes(5, "USD") + f_int(6, 2) + f_int(7, 0) + f_bytes(8, TIME) +
             f_bytes(9, TIME) + f_bytes(10, timeline))
    files["n_create_order_response"] = b"n" + f_bytes(1, order) + f_int(2, 1)
    files["o_list_orders"] = b"o" + f_bytes(1, order) + f_bytes(1, order) + f_bytes(2, "dG9rZW4")
    product = (f_bytes(1, UUID) + f_bytes(2, "MUG-1") + f_bytes(3, "Mug") + f_bytes(4, "") +
               f_int(5, 1200) + f_bytes(6, "USD") + f_int(7, 1) + f_bytes(8, TIME) +
               f_bytes(9, TIME))
    files["p_list_products"] = b"p" + f_bytes(1, product) + f_bytes(2, "")
    files["q_stock"] = b"q" + f_bytes(1, f_bytes(1, UUID) + f_int(2, 10) + f_int(3, 2) + f_int(4, 1))
    user = f_bytes(1, UUID) + f_bytes(2, "ann@example.com") + f_bytes(3, "Ann") + f_int(4, 2) + f_bytes(5, TIME)
    files["r_get_user"] = b"r" + f_bytes(1, user) + f_bytes(2, f_bytes(1, "Ann") + f_bytes(3, f_bytes(3, "Springfield")))
    files["r_unknown_enum"] = b"r" + f_bytes(1, f_int(4, 7))
    entry = f_bytes(1, UUID) + f_int(2, 1) + f_int(3, 5000) + f_bytes(4, "USD") + f_bytes(6, TIME)
    files["s_wallet"] = b"s" + f_int(1, 5000) + f_bytes(2, "USD") + f_bytes(3, entry) + f_bytes(4, "NDI")
    files["t_deposit"] = b"t" + f_int(1, 5000) + f_bytes(2, "USD") + f_bytes(3, entry) + f_int(4, 1)
    files["u_token"] = b"u" + f_bytes(1, "eyJ.a.b") + f_bytes(2, "Bearer") + f_int(3, 900) + f_bytes(6, UUID)
    files["v_scalars"] = b"v" + f_int(1, 7) + f_int(2, 1 << 63) + f_bytes(6, "t") + f_bytes(8, b"\x01\x00")
    files["w_tree"] = b"w" + f_bytes(1, "root") + f_bytes(2, f_bytes(1, "c")) + f_bytes(3, f_bytes(1, "a"))
    return files


def saga_event():
    def msg(headers, value):
        lines = "".join(f"{n}:{v}\n" if v is not None else f"{n}\n" for n, v in headers)
        return lines.encode() + b"\n" + value

    def ce(type_, trace=True, **over):
        h = {"ce_id": UUID, "ce_type": type_, "ce_source": "/shop/order-svc", "ce_time": TIME,
             "ce_specversion": "1.0", "content-type": "application/protobuf"}
        if trace:
            h["traceparent"] = TRACE
        h.update(over)
        return [(k, v) for k, v in h.items() if v != "DROP"]

    line = f_bytes(1, UUID2) + f_int(2, 2) + f_int(3, 1200)
    stock_line = f_bytes(1, UUID2) + f_int(2, 2)
    order = f_bytes(1, UUID) + f_bytes(2, UUID2)
    ev = "shop.events.v1."
    return {
        "order_created": msg(ce(ev + "OrderCreated"), order + f_bytes(3, line) + f_int(4, 2400) +
                             f_bytes(5, "USD") + f_bytes(6, TIME)),
        "stock_reserved": msg(ce(ev + "StockReserved", trace=False), order + f_int(3, 2400) + f_bytes(4, "USD")),
        "stock_rejected": msg(ce(ev + "StockRejected"), f_bytes(1, UUID) + f_int(2, 1) + f_bytes(3, UUID2) + f_int(4, 3) + f_int(5, 1)),
        "payment_completed": msg(ce(ev + "PaymentCompleted"), order + f_int(3, 2400) + f_bytes(4, "USD") + f_bytes(5, UUID)),
        "payment_failed": msg(ce(ev + "PaymentFailed"), order + f_int(3, 1) + f_int(4, 2400) + f_bytes(5, "USD")),
        "order_confirmed": msg(ce(ev + "OrderConfirmed"), order + f_bytes(3, line) + f_int(4, 2400) + f_bytes(5, "USD")),
        "order_cancelled": msg(ce(ev + "OrderCancelled"), order + f_int(3, 2) + f_bytes(4, line) + f_int(7, 1)),
        "stock_committed": msg(ce(ev + "StockCommitted"), f_bytes(1, UUID) + f_bytes(2, stock_line)),
        "stock_released": msg(ce(ev + "StockReleased"), f_bytes(1, UUID) + f_int(2, 3) + f_bytes(3, stock_line)),
        "payment_refunded": msg(ce(ev + "PaymentRefunded"), order + f_int(3, 2400) + f_bytes(4, "USD")),
        "empty_value": msg(ce(ev + "OrderCreated"), b""),
        "ignored_type": msg(ce("shop.events.v1.SomethingElse"), b"\x0a\x01x"),
        "bad_value": msg(ce(ev + "OrderCreated"), b"\x0a\xff\xff\xff\xff\x0f"),
        "missing_id": msg(ce(ev + "OrderCreated", ce_id="DROP"), order),
        "null_header": msg(ce(ev + "OrderCreated", ce_source=None), order),
        "bad_time": msg(ce(ev + "OrderCreated", ce_time="2026-13-01T00:00:00Z"), order),
        "time_offset": msg(ce(ev + "OrderCreated", ce_time="2026-11-24T19:00:00+05:30"), order),
        "bad_trace": msg(ce(ev + "OrderCreated", traceparent="00-00000000000000000000000000000000-00f067aa0ba902b7-01"), order),
        "trace_v1": msg(ce(ev + "OrderCreated", traceparent="01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"), order),
        "nul_in_value": msg(ce(ev + "OrderCreated", ce_source="/shop\x00/order-svc"), order),
        "repeated_header": msg(ce(ev + "OrderCreated") + [("ce_type", ev + "StockReserved")], order),
        "upper_uuid": msg(ce(ev + "OrderCreated", ce_id=UUID.upper()), order),
    }


def http():
    body = '{"lines":[{"product_id":"%s","quantity":2}]}' % UUID
    get = "GET /api/v1/products?limit=10&page_token=dG9rZW4 HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked_body = "".join(f"{len(c):x}\r\n{c}\r\n" for c in (body[:10], body[10:])) + "0\r\n\r\n"

    def post(path, b, extra=""):
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Idempotency-Key: k-1\r\n{extra}Content-Length: {len(b)}\r\n\r\n{b}")

    def chunked(path, extra=""):
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Idempotency-Key: k-1\r\n{extra}Transfer-Encoding: chunked\r\n\r\n{chunked_body}")

    seeds = {
        "get_healthz": "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "get_list": get,
        "get_list_bad_query": "GET /api/v1/products?limit=0&x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "get_product": f"GET /api/v1/products/{UUID.upper()} HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-1\r\ntraceparent: {TRACE}\r\n\r\n",
        "get_not_uuid": "GET /api/v1/products/nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "not_found": "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
        "method_not_allowed": "PUT /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "post_order": post("/api/v1/orders", body),
        "post_order_denied": post("/api/v1/orders", '{"user_id":"u","lines":[]}'),
        "post_order_bad_json": post("/api/v1/orders", '{"lines":[{'),
        "post_order_text": post("/api/v1/orders", body).replace("application/json", "text/plain"),
        "post_order_no_key": post("/api/v1/orders", body).replace("Idempotency-Key: k-1\r\n", ""),
        "post_order_chunked": chunked("/api/v1/orders"),
        "post_cl_and_te": chunked("/api/v1/orders", f"Content-Length: {len(body)}\r\n"),
        "post_two_cl": post("/api/v1/orders", body, f"Content-Length: {len(body) + 1}\r\n"),
        "post_cl_over_limit": post("/api/v1/orders", body).replace(f"Content-Length: {len(body)}", "Content-Length: 999999"),
        "post_body_over_limit": post("/api/v1/orders", '{"lines":[' + ",".join(['{"product_id":"%s","quantity":1}' % UUID] * 40) + "]}"),
        "post_nul_in_body": post("/api/v1/orders", '{"lines":[],"x":"\x00"}'),
        "post_nul_in_header": post("/api/v1/orders", body, "X-Request-Id: a\x00b\r\n"),
        "patch_product": post(f"/api/v1/products/{UUID}", '{"name":"Mug","active":true}').replace("POST", "PATCH", 1),
        "put_stock": post(f"/api/v1/products/{UUID}/stock", '{"available":5}').replace("POST", "PUT", 1),
        "delete_product": f"DELETE /api/v1/products/{UUID} HTTP/1.1\r\nHost: x\r\n\r\n",
        "cancel_empty": f"POST /api/v1/orders/{UUID}/cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "auth_user": "GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2ln\r\n\r\n",
        "auth_none_alg": "POST /api/v1/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIn0.\r\nContent-Length: 0\r\n\r\n",
        "auth_optional_bad": get.replace("Host: x\r\n", "Host: x\r\nAuthorization: Basic YTpi\r\n"),
        "long_header": "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + "a" * 3000 + "\r\n\r\n",
        "pipelined": "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + get,
        "expect_continue": post("/api/v1/orders", body, "Expect: 100-continue\r\n"),
        "http10": "GET /healthz HTTP/1.0\r\n\r\n",
        "no_host": "GET /healthz HTTP/1.1\r\n\r\n",
        "obs_fold": "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n",
        "bare_lf": "GET /healthz HTTP/1.1\nHost: x\n\n",
        "incomplete": "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        "garbage": "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    }
    return {k: v.encode("latin-1") for k, v in seeds.items()}


def router():
    return {f"{i:02d}": s.encode() for i, s in enumerate([
        "GET\n/api/v1/products",
        f"GET\n/api/v1/products/{UUID}",
        f"PUT\n/api/v1/products/{UUID}/stock",
        f"POST\n/api/v1/orders/{UUID}/cancel",
        "DELETE\n/api/v1/orders",
        "GET\n/api/v1/users/me/wallet",
        "GET\n/api/v1/products/",
        "GET\n/api/v1/products//stock",
        "GET\n//api/v1/products",
        "GET\n/healthz/",
        "PATCH\n/api/v1/products/" + "x" * 200,
        "GET\n/",
        "\n",
        "OPTIONS\n/api/v1/users/me",
    ])}


def page_token():
    import base64

    def b64(s):
        return base64.urlsafe_b64encode(s.encode()).rstrip(b"=")

    return {
        "order": b64(f"1764010800123456:{UUID}:{UUID2}"),
        "order_all": b64(f"1764010800123456:{UUID}:*"),
        "product": b64(f"1764010800123456:{UUID}:9dc5a1b2"),
        "user": b64("42"),
        "one_char": b"Q",
        "padding": b"QQ==",
        "stray_bits": b"QR",
        "plus_slash": b"ab+/",
        "nul_inside": b64("a\x00b"),
        "empty": b"",
    }


def main():
    for target, gen in (("json_pb", json_pb), ("saga_event", saga_event), ("http", http),
                        ("router", router), ("page_token", page_token)):
        d = os.path.join(HERE, "corpus", target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in gen().items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
