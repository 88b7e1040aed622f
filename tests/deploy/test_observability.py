#!/usr/bin/python3
"""The metrics of the running fleet, and the alerts and dashboard built on them.

    test_observability.py -- PROGRAM...   (every program of deploy/fleet.conf)

Starts the three services and the gateway against the test stack
(tests/e2e/gateway/gateway_stack.py), scrapes each program's /metrics and checks:
  - `promtool check metrics` (Debian's prometheus package) finds no problem in it;
  - process_* and shop_build_info{program, version, commit} are there;
  - the counters an increase() alert reads exist at 0 before any event: the DLQ
    and dropped counters of every consumed topic, the server-fault RPC codes of
    every method, the 5xx statuses of every gateway route;
  - kafka_consumer_lag_messages shows each consumer group's partitions;
  - every metric name used in deploy/observability/prometheus/alerts.yml and
    deploy/observability/grafana/shop-fleet.json is one a program exports, so a
    rename that forgets them fails here.
"""
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e", "gateway"))
from gateway_stack import FLEET, SERVICES, main_for  # noqa: E402

import yaml  # noqa: E402  (Debian's python3-yaml)

STACK = None
GW = None
ALERTS = os.path.join(ROOT, "deploy", "observability", "prometheus", "alerts.yml")
DASHBOARD = os.path.join(ROOT, "deploy", "observability", "grafana", "shop-fleet.json")
SERVER_FAULTS = ("UNKNOWN", "DEADLINE_EXCEEDED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS")
# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


def scrapes():
    """{program: /metrics text} of the gateway and every service."""
    out = {FLEET[s].program: scrape(STACK.admin[s]) for s in SERVICES}
    out["gateway"] = scrape(GW.port)
    return out


def families(text):
    """{metric family name: type} from the # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def has_line(text, series, value):
    return re.search("^%s %s$" % (re.escape(series), re.escape(value)), text, re.M) is not None


def metric_names(expr):
    """The metric names a PromQL expression reads (label names, functions, keywords,
    strings and ranges left out)."""
    e = re.sub(r'"(\\.|[^"\\])*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word, rest = m.group(0), e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def exported(name, fams):
    if name in fams or name in SYNTHETIC:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and fams.get(name[: -len(suffix)]) == "histogram":
            return True
    return False


class Observability(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.texts = scrapes()

    def test_promtool_finds_no_problem_in_any_scrape(self):
        for program, text in self.texts.items():
            with self.subTest(program=program):
                out = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                                     capture_output=True, timeout=60)
                self.assertEqual(out.returncode, 0, out.stdout.decode() + out.stderr.decode())

    def test_process_metrics_and_build_info(self):
        for program, text in self.texts.items():
            with self.subTest(program=program):
                fams = families(text)
                self.assertEqual(fams.get("process_cpu_seconds_total"), "counter")
                for g in ("process_resident_memory_bytes", "process_virtual_memory_bytes",
                          "process_open_fds", "process_max_fds", "process_start_time_seconds"):
                    self.assertEqual(fams.get(g), "gauge", g)
                m = re.search(r'^process_start_time_seconds (\S+)$', text, re.M)
                self.assertLess(abs(float(m.group(1)) - time.time()), 600)
                self.assertRegex(text, r'(?m)^shop_build_info\{commit="[^"]+",program="%s",'
                                 r'version="\d+\.\d+\.\d+"\} 1$' % re.escape(program))

    def test_alerted_counters_exist_at_zero(self):
        for svc in SERVICES:
            row = FLEET[svc]
            text = self.texts[row.program]
            with self.subTest(program=row.program):
                for topic in row.consumes:
                    for name in ("kafka_events_dlq_total", "kafka_events_dlq_dropped_total"):
                        self.assertTrue(has_line(text, '%s{topic="%s"}' % (name, topic), "0"),
                                        "%s{topic=%s} not at 0" % (name, topic))
                methods = set(re.findall(r'^rpc_server_duration_seconds_count\{method="([^"]+)"',
                                         text, re.M)) - {"unknown"}
                self.assertTrue(methods)
                for method in methods:
                    for code in SERVER_FAULTS:
                        self.assertIsNotNone(
                            re.search(r'(?m)^rpc_server_requests_total\{code="%s",method="%s"\} '
                                      % (code, re.escape(method)), text), (method, code))
        gw = self.texts["gateway"]
        routes = set(re.findall(r'^http_request_duration_seconds_count\{route="([^"]+)"', gw,
                                re.M))
        self.assertIn("/api/v1/orders", routes)
        for route in routes:
            for status in ("500", "502", "503", "504"):
                self.assertIsNotNone(
                    re.search(r'(?m)^http_requests_total\{method="[A-Za-z]+",route="%s",'
                              r'status="%s"\} ' % (re.escape(route), status), gw),
                    (route, status))

    def test_consumer_lag_covers_every_consumed_partition(self):
        deadline = time.time() + 60
        for svc in SERVICES:
            row = FLEET[svc]
            with self.subTest(program=row.program):
                while True:
                    text = scrape(STACK.admin[svc])
                    topics = set(re.findall(r'^kafka_consumer_lag_messages\{group="%s",'
                                            r'partition="\d+",topic="([^"]+)"\} \d+$'
                                            % re.escape(row.program), text, re.M))
                    if topics == set(row.consumes) or time.time() > deadline:
                        break
                    time.sleep(0.5)
                self.assertEqual(topics, set(row.consumes))

    def test_alerts_and_dashboard_use_only_exported_names(self):
        fams = {}
        for text in self.texts.values():
            fams.update(families(text))
        with open(ALERTS) as f:
            rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
        with open(DASHBOARD) as f:
            panels = json.load(f)["panels"]
        exprs = [("alert " + r["alert"], r["expr"]) for r in rules]
        exprs += [("panel " + p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
        self.assertGreater(len(exprs), 20)
        for where, expr in exprs:
            names = metric_names(expr)
            self.assertTrue(names, "%s: no metric found in %s" % (where, expr))
            for name in names:
                self.assertTrue(exported(name, fams), "%s: %s is not exported" % (where, name))
        self.assertEqual(metric_names('sum by (job) (rate(a_total{x="y"}[5m])) / b'),
                         {"a_total", "b"})


if __name__ == "__main__":
    main_for(globals())
