#!/usr/bin/env python3
"""Traces of the local stack in the terminal, from Jaeger's HTTP query API.

    traces.py recent [--service S] [--limit N]   newest traces: id, root span, spans, services, duration
    traces.py show TRACE_ID                        one trace as a tree of spans

TRACE_QUERY_URL (stack.sh env) names the API, e.g. http://127.0.0.1:16686/api/traces.
The Jaeger built from the Go module proxy serves this API but not its web UI (the UI's
assets are built from a separate repository with npm and are not in the Go module), so
this is the way to look at a trace without other tools; curl $TRACE_QUERY_URL/<id> gives
the raw JSON.
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {"data": []}
        raise SystemExit(f"traces: {url}: HTTP {e.code}")
    except (urllib.error.URLError, OSError) as e:
        raise SystemExit(f"traces: {url}: {e} (is the stack up? TRACE_QUERY_URL={url})")


def parent_of(span):
    for ref in span.get("references") or []:
        if ref.get("refType") == "CHILD_OF" and ref.get("traceID") == span["traceID"]:
            return ref["spanID"]
    return None


def tag(span, key):
    for t in span.get("tags") or []:
        if t.get("key") == key:
            return t.get("value")
    return None


def summary(trace):
    spans = trace["spans"]
    ids = {s["spanID"] for s in spans}
    roots = [s for s in spans if parent_of(s) not in ids] or spans
    root = min(roots, key=lambda s: s["startTime"])
    start = min(s["startTime"] for s in spans)
    end = max(s["startTime"] + s["duration"] for s in spans)
    services = sorted({trace["processes"][s["processID"]]["serviceName"] for s in spans})
    return root, end - start, services


def cmd_recent(base, args):
    q = urllib.parse.urlencode({"service": args.service, "limit": args.limit, "lookback": "1h"})
    traces = fetch(f"{base}?{q}").get("data") or []
    traces.sort(key=lambda t: min(s["startTime"] for s in t["spans"]), reverse=True)
    for t in traces:
        root, dur, services = summary(t)
        print(f"{t['traceID']}  {dur / 1000:9.1f} ms  {len(t['spans']):3d} spans  "
              f"{root['operationName']}  [{', '.join(services)}]")
    if not traces:
        print(f"no traces of service '{args.service}' in the last hour", file=sys.stderr)


def cmd_show(base, args):
    data = fetch(f"{base}/{args.trace_id}").get("data") or []
    if not data:
        raise SystemExit(f"traces: no trace {args.trace_id}")
    trace = data[0]
    spans = trace["spans"]
    ids = {s["spanID"] for s in spans}
    children = {}
    for s in spans:
        children.setdefault(parent_of(s) if parent_of(s) in ids else None, []).append(s)
    t0 = min(s["startTime"] for s in spans)

    def show(span, depth):
        svc = trace["processes"][span["processID"]]["serviceName"]
        kind = tag(span, "span.kind") or ""
        err = "  ERROR" if tag(span, "error") in (True, "true") else ""
        print(f"{(span['startTime'] - t0) / 1000:9.1f} ms {span['duration'] / 1000:8.1f} ms  "
              f"{'  ' * depth}{svc}: {span['operationName']} ({kind}){err}")
        for c in sorted(children.get(span["spanID"], []), key=lambda s: s["startTime"]):
            show(c, depth + 1)

    print(f"trace {trace['traceID']}: {len(spans)} spans   start      took  span")
    for root in sorted(children.get(None, []), key=lambda s: s["startTime"]):
        show(root, 0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recent", help="the newest traces")
    r.add_argument("--service", default="gateway")
    r.add_argument("--limit", type=int, default=10)
    s = sub.add_parser("show", help="one trace as a tree")
    s.add_argument("trace_id")
    args = p.parse_args()
    base = os.environ.get("TRACE_QUERY_URL")
    if not base:
        raise SystemExit("traces: TRACE_QUERY_URL is not set (deploy/local/stack.sh env names it)")
    {"recent": cmd_recent, "show": cmd_show}[args.cmd](base.rstrip("/"), args)


if __name__ == "__main__":
    main()
