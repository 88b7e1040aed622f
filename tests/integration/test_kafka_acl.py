#!/usr/bin/env python3
"""Zero trust on Kafka (docs/trust.md, "Kafka"), against the test stack's real broker
(deploy/local/stack.sh env: KAFKA_BROKERS, KAFKA_<SVC>_USERNAME / _PASSWORD_FILE,
KAFKA_ADMIN_*, TLS_CA_FILE): the broker refuses clients without TLS, without
credentials or with a wrong password; a service's principal can do what
deploy/fleet.conf gives it, every row and every topic checked against the manifest:
write the topic it produces and the dead-letter topics of the topics it consumes, read
the topics it consumes, use its own consumer group, and nothing else (a forged
PaymentCompleted from product-svc is refused with TOPIC_AUTHORIZATION_FAILED).

Clients: kcat (librdkafka, as the services) and the broker's own ConsumerGroupCommand
(Java), which describes a group without joining it, so the check disturbs no
service's group. Writes that must succeed put one probe record (no CloudEvents
headers) into each topic; a consumer of the test stack dead-letters it, as it must."""

import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import unittest
import uuid

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import fleet  # noqa: E402

BROKERS = os.environ["KAFKA_BROKERS"]
CA = os.environ.get("TLS_CA_FILE", "")
TIMEOUT_S = 30
SERVICES = fleet.services(fleet.load())
# Every consumed or produced topic, then their dead-letter topics (deploy/fleet.conf).
_BASE = sorted({t for s in SERVICES for t in s.consumes + s.produces})
TOPICS = _BASE + [t + ".dlq" for t in _BASE]


def password(user):
    var = "KAFKA_ADMIN_PASSWORD_FILE" if user == "admin" else \
        "KAFKA_%s_PASSWORD_FILE" % user.split("-")[0].upper()
    with open(os.environ[var]) as f:
        return f.read().strip()


def sasl(user, pw=None):
    """kcat -X settings of `user` over SASL_SSL (the fleet's clients)."""
    return ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN",
            "-X", "sasl.username=" + user, "-X", "sasl.password=" + (pw or password(user)),
            "-X", "ssl.ca.location=" + CA]


def kcat(args, stdin=None):
    """kcat's exit status and stderr."""
    p = subprocess.run(["kcat", "-b", BROKERS, "-m", "10"] + args, input=stdin, text=True,
                       capture_output=True, timeout=TIMEOUT_S)
    return p.returncode, p.stderr


def produce(auth, topic, headers=()):
    hs = []
    for h in headers:
        hs += ["-H", h]
    return kcat(auth + ["-P", "-t", topic, "-k", "acl-probe-" + str(uuid.uuid4())] + hs,
                stdin="acl probe\n")


def read(auth, topic):
    """Reads partition 0 from its end without a group (Fetch, ListOffsets)."""
    return kcat(auth + ["-C", "-t", topic, "-p", "0", "-o", "end", "-e", "-q"])


def end_offsets(topic, partitions=6):
    """[(partition, end offset)] as the admin sees them."""
    args = []
    for p in range(partitions):
        args += ["-t", "%s:%d:-1" % (topic, p)]
    out = subprocess.run(["kcat", "-b", BROKERS] + sasl("admin") + ["-Q"] + args,
                         capture_output=True, text=True, timeout=TIMEOUT_S).stdout
    return sorted(re.findall(r"\[(\d+)\] offset (\d+)", out))


def describe_group(user, group):
    """ConsumerGroupCommand --describe as `user`: its output and stderr."""
    java_libs = os.environ.get("KAFKA_LIBS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "shop-fleet",
        "kafka-4.1.1")
    with tempfile.NamedTemporaryFile("w", suffix=".properties") as conf:
        conf.write("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                   "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
                   'required username="%s" password="%s";\n'
                   "ssl.truststore.type=PEM\nssl.truststore.location=%s\n"
                   % (user, password(user), CA))
        conf.flush()
        p = subprocess.run(["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp",
                            os.path.join(java_libs, "*"), "-Dlog4j2.configurationFile=" +
                            os.path.join(ROOT, "deploy/local/kafka/log4j2.properties"),
                            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                            "--bootstrap-server", BROKERS, "--command-config", conf.name,
                            "--describe", "--group", group], capture_output=True, text=True,
                           timeout=120)
        return p.stdout + p.stderr


class BrokerRefusesTheUnauthenticated(unittest.TestCase):
    def assertRefused(self, rc, err, why):
        self.assertNotEqual(rc, 0, err)
        self.assertRegex(err, why)

    def test_plaintext_without_credentials_is_refused(self):
        rc, err = kcat(["-L"])
        self.assertRefused(rc, err, "Broker transport failure|Disconnected|brokers are down")

    def test_tls_without_credentials_is_refused(self):
        rc, err = kcat(["-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + CA, "-L"])
        self.assertRefused(rc, err, "Broker transport failure|Disconnected|brokers are down")

    def test_a_wrong_password_is_refused(self):
        for user in ["admin"] + [s.program for s in SERVICES]:
            rc, err = kcat(sasl(user, "not-the-password") + ["-L"])
            self.assertRefused(rc, err, "Authentication failed")

    def test_a_broker_certificate_not_of_our_ca_is_refused(self):
        # The system's CAs do not know the stack's CA: the client refuses the broker.
        rc, err = kcat(sasl("admin")[:-2] +
                       ["-X", "ssl.ca.location=/etc/ssl/certs/ca-certificates.crt", "-L"])
        self.assertRefused(rc, err, "certificate verify failed|SSL handshake failed")


class ServicePrincipalsDoWhatTheManifestSays(unittest.TestCase):
    def test_a_forged_payment_completed_from_product_svc_is_refused(self):
        before = end_offsets("payment.events")
        rc, err = produce(sasl("product-svc"), "payment.events", [
            "ce_id=" + str(uuid.uuid4()), "ce_type=shop.events.v1.PaymentCompleted",
            "ce_source=/shop/user-svc", "ce_time=2026-12-03T12:00:00Z", "ce_specversion=1.0",
            "content-type=application/protobuf"])
        self.assertNotEqual(rc, 0, err)
        self.assertIn("Topic authorization failed", err)
        self.assertEqual(end_offsets("payment.events"), before, "a forged event landed")

    def test_every_row_writes_and_reads_exactly_its_topics(self):
        jobs = {}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for s in SERVICES:
                auth = sasl(s.program)
                for t in TOPICS:
                    may_write = t in s.produces or t in [c + ".dlq" for c in s.consumes]
                    jobs[(s.program, "write", t, may_write)] = pool.submit(produce, auth, t)
                    jobs[(s.program, "read", t, t in s.consumes)] = pool.submit(read, auth, t)
        wrong = []
        for (program, op, topic, allowed), job in jobs.items():
            rc, err = job.result()
            if allowed and rc != 0:
                wrong.append("%s cannot %s %s: %s" % (program, op, topic, err.strip()[-200:]))
            if not allowed and (rc == 0 or "authorization failed" not in err):
                wrong.append("%s may %s %s (%d: %s)" % (program, op, topic, rc, err.strip()[-200:]))
        self.assertEqual(wrong, [])

    def test_each_service_uses_its_own_group_and_no_other(self):
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            own = {s.program: pool.submit(describe_group, s.program, s.program) for s in SERVICES}
            other = {s.program: pool.submit(describe_group, s.program,
                                            SERVICES[(i + 1) % len(SERVICES)].program)
                     for i, s in enumerate(SERVICES)}
        for program, job in own.items():
            self.assertNotIn("AuthorizationException", job.result(), program)
        for program, job in other.items():
            self.assertIn("GroupAuthorizationException", job.result(), program)


if __name__ == "__main__":
    unittest.main(verbosity=2)
