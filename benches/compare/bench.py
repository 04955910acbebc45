#!/usr/bin/env python3
"""Helper for run.sh.

  bench.py rlms URL PROMPT CONTEXT     run the rlms library once against the fake; print wall seconds
  bench.py record STATS_URL SYSTEM LATENCY_MS WALL_S N OUT
                                       read the fake's /stats, append one JSON line to OUT
  bench.py table OUT                   print the comparison table

Overhead per iteration = arrival of root request k+1 - answer sent for root request k.
"""
import json
import statistics
import sys
import time
import urllib.request


def run_rlms(base_url, prompt, context):
    from importlib.metadata import version

    from rlm import RLM
    import rlm.clients.openai  # noqa: F401  get_client imports it lazily (~0.3 s); keep that out of wall

    ver = tuple(int(x) for x in version("rlms").split(".")[:3])
    if ver < (0, 1, 2):  # FINAL(...) protocol; the fake answers it under /legacy
        base_url = base_url.replace("/v1", "/legacy/v1", 1)
    engine = RLM(backend="openai", environment="local", max_iterations=35,
                 backend_kwargs={"model_name": "fake", "base_url": base_url, "api_key": "test"})
    t0 = time.perf_counter()
    result = engine.completion(context, root_prompt=prompt)
    wall = time.perf_counter() - t0
    if result.response != "done":
        sys.exit(f"rlms answered {result.response!r}, expected 'done'")
    print(f"{wall:.6f}")


def record(stats_url, system, latency_ms, wall, n, out):
    reqs = json.load(urllib.request.urlopen(stats_url))["requests"]
    roots = sorted((r for r in reqs if r["root"]), key=lambda r: r["received"])
    if len(roots) != int(n):
        sys.exit(f"{system}: {len(roots)} root requests, expected {n}")
    gaps = [b["received"] - a["sent"] for a, b in zip(roots, roots[1:])]
    model = sum(r["sent"] - r["received"] for r in reqs)
    row = {"system": system, "latency_ms": int(latency_ms), "wall_s": float(wall),
           "model_s": model, "overheads_s": gaps}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def table(out):
    rows = [json.loads(line) for line in open(out)]
    groups = {}
    for r in rows:
        groups.setdefault((r["system"], r["latency_ms"]), []).append(r)
    print(f"{'system':<8}{'latency':>9}{'runs':>6}{'wall med':>11}{'wall-model':>12}"
          f"{'ovh/iter med':>14}{'ovh/iter p90':>14}")
    for (system, lat), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        gaps = [g for r in rs for g in r["overheads_s"]]
        wall = statistics.median(r["wall_s"] for r in rs)
        rest = statistics.median(r["wall_s"] - r["model_s"] for r in rs)
        print(f"{system:<8}{lat:>7}ms{len(rs):>6}{wall:>10.3f}s{rest:>11.3f}s"
              f"{statistics.median(gaps) * 1e3:>12.2f}ms{pct(gaps, 90) * 1e3:>12.2f}ms")
    print("wall-model: wall minus time spent inside the fake model (startup, teardown, all overhead)")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"rlms": run_rlms, "record": record, "table": table}[cmd](*args)
