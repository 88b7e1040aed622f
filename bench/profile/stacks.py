"""Reads perf.data with call graphs and groups its samples.

    python3 bench/profile/stacks.py perf-X.data US_PER_REQ 'label=FRAME[&FRAME|&-FRAME]' ...

Each sample goes to the first rule all of whose frames are on its stack (FRAME: a
substring of a symbol, or @<dso file name>; -FRAME: must not be on it); prints the share
of the process's samples and that share of US_PER_REQ (its CPU per request measured
without perf). With no rules: inclusive share of the top 80 frames.
"""
import collections
import os
import pickle
import re
import subprocess
import sys


def load(data):
    cache = data + ".pkl"
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"],
                         capture_output=True, text=True).stdout
    stacks, cur = [], None
    for line in out.splitlines():
        if not line.strip():
            if cur is not None:
                stacks.append(cur)
                cur = None
            continue
        if not line.startswith((" ", "\t")):
            cur = []
            continue
        parts = line.strip().split(None, 1)
        rest = parts[1] if len(parts) > 1 else "?"
        m = re.match(r"(.*?)(?:\+0x[0-9a-f]+)? \((.*)\)$", rest)
        cur.append((m.group(1), m.group(2).rsplit("/", 1)[-1]) if m else (rest, "?"))
    if cur:
        stacks.append(cur)
    with open(cache, "wb") as f:
        pickle.dump(stacks, f)
    return stacks


def has(stack, frame):
    return any((frame[1:] == b) if frame.startswith("@") else (frame in a) for a, b in stack)


def main():
    stacks = load(sys.argv[1])
    n = len(stacks)
    us = float(sys.argv[2]) if len(sys.argv) > 2 else 0
    rules = [r.split("=", 1) for r in sys.argv[3:]]
    if not rules:
        incl = collections.Counter()
        for s in stacks:
            for k in set(f"{a} [{b}]" for a, b in s):
                incl[k] += 1
        for k, v in incl.most_common(80):
            print(f"{100 * v / n:6.2f}%  {k[:150]}")
        return
    count = collections.Counter()
    for s in stacks:
        for name, spec in rules:
            if all(not has(s, f[1:]) if f.startswith("-") else has(s, f) for f in spec.split("&")):
                count[name] += 1
                break
        else:
            count["(other)"] += 1
    print(f"{n} samples")
    for name, _ in rules + [("(other)", "")]:
        print(f"{100 * count[name] / n:6.1f}%  {us * count[name] / n:6.1f} us  {name}")


main()
