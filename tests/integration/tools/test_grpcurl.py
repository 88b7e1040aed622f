#!/usr/bin/python3
"""The operator's gRPC tooling: grpcurl with the build's descriptor set against a real
service (README "Operations: call a service with grpcurl").

    test_grpcurl.py PRODUCT_SVC_BINARY PROTOSET

Builds grpcurl (GRPCURL_VERSION, from the Go module proxy) once into
${XDG_CACHE_HOME:-$HOME/.cache}/shop-fleet/tools, starts the real product-svc against
the test stack (PRODUCT_DATABASE_URL, KAFKA_BROKERS, its certificate) and, with
`grpcurl -cacert CA -cert GATEWAY.crt -key GATEWAY.key -protoset PROTOSET` (mutual TLS
as the gateway, docs/trust.md; the services serve no reflection): lists the
services, describes a method (its proto comment comes from the source info), calls
grpc.health.v1.Health/Check, creates, reads and lists a product with JSON in and out,
and sends an invalid request whose google.rpc.BadRequest grpcurl decodes from the
grpc-status-details-bin trailer. Without a certificate (-plaintext) grpcurl is refused,
and x-user-* sent with order-svc's certificate is PERMISSION_DENIED. The run's products (sku prefix TAG) are deleted at
the end (psql).
"""
import json
import os
import shutil
import subprocess
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from grpc_support import ServiceProcess, psql, tls_files  # noqa: E402

GRPCURL_VERSION = "v1.9.4"
GRPCURL_MODULE = "github.com/fullstorydev/grpcurl"
TOOLS = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "shop-fleet", "tools")
GRPCURL = os.path.join(TOOLS, "grpcurl")
SVC = "shop.product.v1.ProductService"
TAG = "GU%s" % uuid.uuid4().hex[:10].upper()
ADMIN = ["-H", "x-user-id: %s" % uuid.uuid4(), "-H", "x-user-role: admin"]

BINARY = PROTOSET = SERVICE = None


def grpcurl_module_version():
    """The module version grpcurl at GRPCURL was built from ("" when absent)."""
    if not os.access(GRPCURL, os.X_OK):
        return ""
    out = subprocess.run(["go", "version", "-m", GRPCURL], stdout=subprocess.PIPE, text=True)
    for line in out.stdout.splitlines():
        cols = line.split()
        if cols[:2] == ["mod", GRPCURL_MODULE]:
            return cols[2]
    return ""


def ensure_grpcurl():
    """Builds grpcurl GRPCURL_VERSION into TOOLS unless that version is there (the
    version is read with `go version -m`, so Go is needed either way)."""
    if shutil.which("go") is None:
        raise RuntimeError("test_grpcurl builds grpcurl with the Go toolchain: `go` is not on PATH")
    if grpcurl_module_version() == GRPCURL_VERSION:
        return
    print("== building grpcurl %s from the Go module proxy (once)" % GRPCURL_VERSION, flush=True)
    os.makedirs(TOOLS, exist_ok=True)
    env = dict(os.environ, GOBIN=TOOLS, GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false")
    subprocess.run(["go", "install", "%s/cmd/grpcurl@%s" % (GRPCURL_MODULE, GRPCURL_VERSION)],
                   cwd=TOOLS, env=env, check=True)


def setUpModule():
    global SERVICE
    ensure_grpcurl()
    SERVICE = ServiceProcess("product-svc", BINARY, "PRODUCT_DATABASE_URL",
                             die_with_parent=True)


def tearDownModule():
    try:
        SERVICE.check_stop()
    finally:
        psql(os.environ["PRODUCT_DATABASE_URL"],
             "DELETE FROM inventory WHERE product_id IN (SELECT id FROM products WHERE sku LIKE "
             "'{t}%'); DELETE FROM products WHERE sku LIKE '{t}%';".format(t=TAG))


def tls_flags(program):
    """grpcurl's flags for mutual TLS as `program` (the stack's certificates)."""
    ca, cert, key = tls_files(program)
    return ["-cacert", ca, "-cert", cert, "-key", key]


def grpcurl(*operands, flags=(), data=None, tls=None):
    """grpcurl [TLS as the gateway] -protoset PROTOSET [flags] [-d data] ADDRESS
    operands (a method, or `list` / `describe` and a symbol) against the service: the
    CompletedProcess, stdout and stderr as text. tls: the flags of another identity."""
    cmd = ([GRPCURL] + (tls if tls is not None else tls_flags("gateway")) +
           ["-protoset", PROTOSET, "-max-time", "10"] + list(flags))
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    cmd += ["127.0.0.1:%d" % SERVICE.port] + list(operands)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=30)


class GrpcurlTest(unittest.TestCase):
    def ok(self, *operands, flags=(), data=None):
        """grpcurl's stdout, after checking it exited 0."""
        out = grpcurl(*operands, flags=flags, data=data)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_lists_every_service_of_the_protoset(self):
        # `list` with -protoset reads the file only: the address is not called.
        out = subprocess.run([GRPCURL, "-protoset", PROTOSET, "list"], stdout=subprocess.PIPE,
                             text=True, check=True).stdout.split()
        for svc in ("grpc.health.v1.Health", "shop.order.v1.OrderService",
                    "shop.product.v1.ProductService", "shop.user.v1.UserService"):
            self.assertIn(svc, out)
        methods = self.ok("list", SVC).split()
        self.assertIn(SVC + ".ListProducts", methods)
        self.assertIn(SVC + ".GetProduct", methods)

    def test_describes_a_method_with_its_comment(self):
        out = self.ok("describe", SVC + ".GetProduct")
        self.assertIn("rpc GetProduct ( .shop.product.v1.GetProductRequest ) returns "
                      "( .shop.product.v1.GetProductResponse );", out)
        # --include_source_info: the proto comment travels in the descriptor set.
        self.assertIn("Returns archived products too", out)
        out = self.ok("describe", "google.rpc.BadRequest")
        self.assertIn("repeated .google.rpc.BadRequest.FieldViolation field_violations = 1;", out)

    def test_health_check_is_serving(self):
        out = self.ok("grpc.health.v1.Health/Check", data={})
        self.assertEqual(json.loads(out), {"status": "SERVING"})

    def test_only_fleet_certificates_get_in_and_only_the_gateway_speaks_for_users(self):
        out = grpcurl("grpc.health.v1.Health/Check", data={}, tls=["-plaintext"])
        self.assertNotEqual(out.returncode, 0, out.stdout)
        order = tls_flags("order-svc")
        self.assertEqual(grpcurl("grpc.health.v1.Health/Check", data={}, tls=order).returncode,
                         0)
        out = grpcurl(SVC + "/ListProducts", flags=ADMIN, data={"limit": 1}, tls=order)
        self.assertEqual(out.returncode, 64 + 7, out.stderr)  # PERMISSION_DENIED
        self.assertIn("order-svc may not send x-user-*", out.stderr)

    def test_rpc_user_callers_admits_a_configured_caller(self):
        global SERVICE
        default = SERVICE
        SERVICE = ServiceProcess("product-svc", BINARY, "PRODUCT_DATABASE_URL",
                                 die_with_parent=True, RPC_USER_CALLERS="gateway,order-svc")
        try:
            for program in ("order-svc", "gateway"):
                out = grpcurl(SVC + "/ListProducts", flags=ADMIN, data={"limit": 1},
                              tls=tls_flags(program))
                self.assertEqual(out.returncode, 0, (program, out.stderr))
            self.assertIn('"RPC_USER_CALLERS":"gateway,order-svc"', SERVICE.logs())
        finally:
            started, SERVICE = SERVICE, default
            started.check_stop()

    def test_real_rpcs_take_and_give_json(self):
        sku = TAG + "-1"
        created = json.loads(self.ok(SVC + "/CreateProduct", flags=ADMIN,
                                     data={"sku": sku, "name": "grpcurl mug",
                                           "price_cents": "1250", "currency": "USD"}))
        product = created["product"]
        self.assertEqual((product["sku"], product["name"], product["priceCents"]),
                         (sku, "grpcurl mug", "1250"))
        got = json.loads(self.ok(SVC + "/GetProduct", data={"product_id": product["id"]}))
        self.assertEqual(got["product"], product)
        listed = json.loads(self.ok(SVC + "/ListProducts", data={"q": TAG, "limit": 10}))
        self.assertEqual([p["id"] for p in listed["products"]], [product["id"]])

    def test_invalid_argument_shows_the_decoded_field_violations(self):
        bad = {"sku": "no spaces allowed", "name": "", "price_cents": "-5", "currency": "EUR"}
        # -format-error: the google.rpc.Status of grpc-status-details-bin as JSON (stderr).
        out = grpcurl(SVC + "/CreateProduct", flags=["-format-error"] + ADMIN, data=bad)
        # grpcurl exits 64 + the status code.
        self.assertEqual(out.returncode, 64 + 3, out.stderr)
        status = json.loads(out.stderr)
        self.assertEqual(status["code"], 3, status)
        self.assertTrue(status["message"], status)
        self.assertEqual(len(status["details"]), 1, status)
        detail = status["details"][0]
        self.assertEqual(detail["@type"], "type.googleapis.com/google.rpc.BadRequest")
        fields = {v["field"]: v["description"] for v in detail["fieldViolations"]}
        self.assertEqual(set(fields), {"sku", "name", "price_cents", "currency"}, fields)
        self.assertTrue(all(fields.values()), fields)
        # The default human-readable error names the code and lists the details.
        out = grpcurl(SVC + "/CreateProduct", flags=ADMIN, data=bad)
        self.assertIn("Code: InvalidArgument", out.stderr)
        self.assertIn('"@type": "type.googleapis.com/google.rpc.BadRequest"', out.stderr)
        self.assertIn('"field": "price_cents"', out.stderr)


if __name__ == "__main__":
    BINARY, PROTOSET = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1], verbosity=2)
