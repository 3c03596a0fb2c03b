"""Routing benchmark (see scripts/bench-routing): the same workload, once per
routing strategy, over N simulated pods behind the real Envoy and
Switchboard. Every strategy starts from cold pods (fresh simulator process,
empty prefix caches). Prints one table (TTFT, TPOT, throughput, prefix-cache
hit rate at the pods, each strategy's ratio to random) and writes an HTML
report. A strategy this build does not have is listed as unavailable, not
silently dropped. With --peers, the peer routers' prefix-aware policies
(sglang-router and vllm-router `cache_aware`, pinned by scripts/setup-peers)
run the same workload on the same fresh pods, in the same invocation.
Nothing is asserted: read the ratios."""
import argparse
import asyncio
import collections
import http.client
import json
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "toolkit"))
from harness import ROOT, Proc, Stack, binary, free_port, free_ports, wait_port  # noqa: E402
from sbbench import client as client_mod  # noqa: E402
from sbbench import datasets, report, workloads  # noqa: E402

SHARED_TRACES = os.path.join(HERE, "..", "..", "shared", "data", "traces")
SLICES = os.path.join(HERE, "traces")


def mooncake_path(folder):
    """The full Mooncake trace when present, else the committed 1,000-row slice."""
    full = os.path.join(folder, "mooncake-fast25-conversation.jsonl")
    return full if os.path.exists(full) else os.path.join(SLICES, "mooncake-fast25-conversation.first1000.jsonl")


def pod_counters(port):
    """(prefix-cache queries, hits, preemptions) from a pod's /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    vals = {}
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0]
        if name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:num_preemptions_total"):
            vals[name] = vals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return (vals.get("vllm:prefix_cache_queries_total", 0.0), vals.get("vllm:prefix_cache_hits_total", 0.0),
            vals.get("vllm:num_preemptions_total", 0.0))


def probe(port, strategy):
    """None when the gateway accepts the strategy, else its error message."""
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "probe"}], "max_tokens": 1})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/v1/chat/completions", body=body,
              headers={"content-type": "application/json", "routing-strategy": strategy})
    r = c.getresponse()
    payload = r.read()
    c.close()
    if r.status == 200:
        return None
    try:
        return json.loads(payload)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status}"


def build_workload(args):
    if args.trace == "mooncake":
        path = mooncake_path(args.traces)
        rows = workloads.mooncake(path,
                                  time_scale=args.time_scale, start_ms=args.start_ms,
                                  max_requests=args.requests, max_output=args.max_tokens)
        params = {"trace": os.path.basename(path), "requests": len(rows), "start_ms": args.start_ms,
                  "time_scale": args.time_scale, "max_output": args.max_tokens}
    else:
        preset = datasets.PREBLE_PRESETS.get(args.preset, {}) if args.preset else {}
        shape = dict(prompt_length=args.prompt_length, prompt_length_std=args.prompt_length_std,
                     shared_proportion=args.shared_proportion, shared_proportion_std=args.shared_proportion_std)
        shape.update(preset)
        per = max(1, args.requests // args.prefixes)
        data = datasets.synthetic_prefix(num_prefixes=args.prefixes, samples_per_prefix=per, seed=args.seed, **shape)
        arrivals = workloads.poisson_arrivals(random.Random(args.seed), args.rate, count=len(data))
        rows = workloads.from_dataset(data, arrivals, max_tokens=args.max_tokens)
        params = {"dataset": "synthetic-prefix", "preset": args.preset, "prefixes": args.prefixes,
                  "requests": len(rows), "rate_per_s": args.rate, "max_tokens": args.max_tokens, "seed": args.seed,
                  **shape}
    return rows, params


class Sims:
    """The simulator processes of one run (one per distinct pod speed)."""

    def __init__(self, procs):
        self.procs = procs

    def stop(self):
        for p in self.procs:
            p.stop()


def pod_speeds(args):
    """Each pod's speed: --speed times its --speeds factor (heterogeneous pods), repeated to --pods."""
    factors = [float(x) for x in args.speeds.split(",")] if args.speeds else [1.0]
    return [args.speed * factors[i % len(factors)] for i in range(args.pods)]


def start_pods(args, rows, name, logdir):
    """Fresh simulated pods (cold prefix caches) for one run; returns (processes, ports)."""
    ports = free_ports(args.pods)
    longest = max(r["prompt_tokens"] + r["max_tokens"] for r in rows) + 64
    groups = collections.defaultdict(list)
    for port, speed in zip(ports, pod_speeds(args)):
        groups[speed].append(port)
    procs = []
    for k, (speed, group) in enumerate(sorted(groups.items())):
        sim_args = [binary("vllm-sim"), "--profile", args.profile, "--speed", str(speed),
                    "--kv-blocks", str(args.kv_blocks), "--max-model-len", str(max(8192, longest)),
                    "--max-num-seqs", str(args.max_num_seqs), "--seed", str(args.seed + k)]
        if args.sim_tokenizer:
            sim_args += ["--tokenizer", args.sim_tokenizer]
        for p in group:
            sim_args += ["--listen", f"127.0.0.1:{p}"]
        procs.append(Proc(f"vllm-sim-{name.replace(' ', '-').replace(':', '-')}-{k}", sim_args, logdir))
    for p in ports:
        wait_port(p)
    return Sims(procs), ports


def measure(args, rows, ports, port, strategy):
    """Runs the workload through the router at `port`; the pods' own prefix-cache counters give the hit rate."""
    before = [pod_counters(p) for p in ports]
    c = client_mod.Client(f"http://127.0.0.1:{port}", "tiny", api="chat", stream=True,
                          strategy=strategy, timeout=args.timeout)
    records = asyncio.run(client_mod.run(rows, c, progress=not args.quiet))
    after = [pod_counters(p) for p in ports]
    q = sum(a[0] - b[0] for a, b in zip(after, before))
    h = sum(a[1] - b[1] for a, b in zip(after, before))
    pre = sum(a[2] - b[2] for a, b in zip(after, before))
    return {"records": records, "hit_rate": h / q if q else 0.0, "preemptions": pre, "ports": ports}


# `NAME@tokenizer`: the strategy with the prefix index in tokenizer mode (the
# tiny model's tokenizer.json, 16-token blocks); plain NAME: character mode.
TOKENIZER = os.path.join(ROOT, ".tiny-model", "tokenizer.json")


def gateway_index_rate(stack):
    """Prompt blocks the gateway's prefix index believed cached at the chosen pod / blocks routed; None if unused."""
    _, m = stack.admin("/metrics")
    vals = {}
    for line in m.splitlines():
        if line.startswith("switchboard_prefix_cache_blocks_total{"):
            vals[line.split('kind="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return vals["cached"] / vals["prompt"] if vals.get("prompt") else None


def run_strategy(args, strategy, rows, logdir):
    name, _, mode = strategy.partition("@")
    extra = []
    if mode == "tokenizer":
        extra = ["--prefix-tokenizer", f"tiny={TOKENIZER}", "--prefix-block-tokens", "16"]
    elif mode:
        return None, f"unknown mode @{mode} (use @tokenizer)"
    sim, ports = start_pods(args, rows, strategy, logdir)
    try:
        tag = "".join(c if c.isalnum() else "-" for c in strategy)[:60]
        with Stack(pod_ports=ports, logdir=tempfile.mkdtemp(prefix=f"{tag}-", dir=logdir), switchboard_args=extra) as stack:
            time.sleep(1.0)  # one scrape of every pod before traffic
            err = probe(stack.envoy_port, name)
            if err is not None:
                return None, err
            r = measure(args, rows, ports, stack.envoy_port, name)
            r["index_rate"] = gateway_index_rate(stack)
            return r, None
    finally:
        sim.stop()


# The peers' prefix-aware policies (both route on the request text with a
# radix tree of what each worker was sent), and sglang's random as their floor.
PEERS = [("sglang cache_aware", "sglang-router", ["launch", "--log-level", "warn"], "cache_aware"),
         ("vllm-router cache_aware", "vllm-router", [], "cache_aware"),
         ("sglang random", "sglang-router", ["launch", "--log-level", "warn"], "random")]


def run_peer(args, label, exe, pre, policy, rows, logdir):
    sim, ports = start_pods(args, rows, label, logdir)
    router = None
    try:
        port = free_port()
        # Each its own Prometheus port: both default to 29000.
        router = Proc(label.replace(" ", "-"), [os.path.join(args.peers, exe)] + pre + [
            "--policy", policy, "--host", "127.0.0.1", "--port", str(port), "--prometheus-port", str(free_port()),
            "--worker-urls"] + [f"http://127.0.0.1:{p}" for p in ports], logdir)
        wait_port(port, timeout=60)
        err = probe(port, policy)
        if err is not None:
            return None, err
        return measure(args, rows, ports, port, None), None
    finally:
        if router:
            router.stop()
        sim.stop()


def ratio(v, base):
    if v is None or not base:
        return "-"
    return f"{v / base:.2f}x"


def balance(r):
    """Each pod's share of the run's requests, in pod order."""
    counts = collections.Counter(rec.get("pod") for rec in r["records"])
    total = max(1, sum(counts.values()))
    return "/".join(f"{100 * counts.get(f'127.0.0.1:{p}', 0) / total:.0f}" for p in r.get("ports", []))


def table(results, unavailable):
    head = (f"{'strategy':34}{'ok':>5}{'TTFT mean':>11}{'TTFT p50':>10}{'TTFT p99':>10}{'TPOT mean':>11}{'tok/s':>9}{'hit %':>7}{'idx %':>7}"
            f"{'preempt':>9}{'TTFT/rnd':>10}{'p99/rnd':>9}{'tok/s/rnd':>10}  requests per pod, %")
    lines = [head, "-" * len(head)]
    unavailable = dict(unavailable)
    base = results.get("random")
    for name, r in results.items():
        s = r["summary"]
        t, tp = s["ttft_ms"] or {}, s["tpot_ms"] or {}
        bs = base["summary"] if base else None
        lines.append(
            f"{name:34}{s['ok']:>5}{t.get('mean', 0):>11.1f}{t.get('p50', 0):>10.1f}{t.get('p99', 0):>10.1f}{tp.get('mean', 0):>11.2f}"
            f"{s['output_tokens_per_s']:>9.0f}{r['hit_rate'] * 100:>7.1f}"
            f"{'-' if r.get('index_rate') is None else format(r['index_rate'] * 100, '.1f'):>7}{r['preemptions']:>9.0f}"
            f"{ratio(t.get('mean'), bs and (bs['ttft_ms'] or {}).get('mean')):>10}"
            f"{ratio(t.get('p99'), bs and (bs['ttft_ms'] or {}).get('p99')):>9}"
            f"{ratio(s['output_tokens_per_s'], bs and bs['output_tokens_per_s']):>10}  {balance(r)}")
    for name, why in unavailable.items():
        lines.append(f"{name:30} unavailable in this build: {why}")
    lines.append("TTFT/TPOT in ms (wall clock; the simulated card runs --speed times faster than the profile); "
                 "hit % = prompt tokens the pods found cached; idx % = prompt blocks the gateway's prefix index believed "
                 "cached at the chosen pod (prefix strategies); requests per pod in pod order (see pod_speeds in the workload line).")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", default="random;least-request;power-of-two;least-kv-cache;least-latency;throughput;"
                                            "least-request:1,least-kv-cache:1;prefix-cache;prefix-cache-preble",
                    help="strategies to compare, separated by ';' (or ',' when no blend is among them)")
    ap.add_argument("--pods", type=int, default=4)
    ap.add_argument("--trace", choices=["synthetic", "mooncake"], default="synthetic")
    ap.add_argument("--traces", default=SHARED_TRACES,
                    help="folder with the full public traces (else the slices in Benchmarks/traces)")
    ap.add_argument("--preset", choices=sorted(datasets.PREBLE_PRESETS), help="Preble shape for the synthetic workload")
    ap.add_argument("--prefixes", type=int, default=8, help="synthetic: shared-prefix groups")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rate", type=float, default=8.0, help="synthetic: Poisson requests per second")
    ap.add_argument("--prompt-length", type=float, default=2000)
    ap.add_argument("--prompt-length-std", type=float, default=200)
    ap.add_argument("--shared-proportion", type=float, default=0.9)
    ap.add_argument("--shared-proportion-std", type=float, default=0.02)
    ap.add_argument("--max-tokens", type=int, default=64, help="completion tokens (a cap for traces)")
    ap.add_argument("--time-scale", type=float, default=1.0, help="mooncake: multiply trace timestamps")
    ap.add_argument("--start-ms", type=float, default=0.0, help="mooncake: slice start")
    ap.add_argument("--profile", default="a100-llama3-8b")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--speeds", default=None, metavar="F,F,...",
                    help="heterogeneous pods: per-pod speed factors (times --speed), repeated over --pods, "
                         "e.g. 1,1,0.5,0.25")
    ap.add_argument("--kv-blocks", type=int, default=4096, help="per pod")
    ap.add_argument("--sim-tokenizer", default=None, metavar="PATH",
                    help="the simulated pods tokenize with this tokenizer.json instead of one token per word; "
                         "default: the tiny model's when a strategy runs @tokenizer (then for every strategy in the table)")
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=None, help="records, table and report go here")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--peers", metavar="BIN_DIR",
                    help="a directory with sglang-router and vllm-router (scripts/setup-peers): their cache_aware "
                         "policies (and sglang's random) run the same workload on fresh pods beside the strategies")
    args = ap.parse_args()

    out_dir = args.out_dir or tempfile.mkdtemp(prefix="bench-routing-")
    os.makedirs(out_dir, exist_ok=True)
    if args.sim_tokenizer is None and "@tokenizer" in args.strategies:
        args.sim_tokenizer = TOKENIZER
    rows, params = build_workload(args)
    params.update({"pods": args.pods, "profile": args.profile, "speed": args.speed, "pod_speeds": pod_speeds(args),
                   "kv_blocks_per_pod": args.kv_blocks, "sim_tokenizer": args.sim_tokenizer,
                   "max_num_seqs": args.max_num_seqs})
    print("workload: " + json.dumps(params), flush=True)
    results, unavailable = {}, {}
    sep = ";" if ";" in args.strategies else ","
    runs = [(s.strip(), lambda s=s.strip(): run_strategy(args, s, rows, out_dir))
            for s in args.strategies.split(sep) if s.strip()]
    if args.peers:
        runs += [(f"peer: {label}", lambda p=(label, exe, pre, pol): run_peer(args, *p, rows, out_dir))
                 for label, exe, pre, pol in PEERS]
    for strategy, run in runs:
        r, err = run()
        if r is None:
            unavailable[strategy] = err
            print(f"{strategy}: unavailable ({err})", flush=True)
            continue
        r["summary"] = report.summarize(r["records"])
        results[strategy] = r
        datasets.write_jsonl(r["records"], os.path.join(out_dir, "".join(c if c.isalnum() or c in "-_" else "-" for c in strategy) + ".records.jsonl"))
        print(f"{strategy}: {r['summary']['ok']}/{r['summary']['requests']} ok, "
              f"TTFT mean {(r['summary']['ttft_ms'] or {}).get('mean', 0):.1f} ms, hit rate {r['hit_rate'] * 100:.1f}%",
              flush=True)
    text = table(results, unavailable)
    print()
    print(text)
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write(text + "\n")
    html_path = os.path.join(out_dir, "report.html")
    report.html_report({k: v["records"] for k, v in results.items()}, html_path, title="Switchboard routing benchmark",
                       summaries={k: v["summary"] for k, v in results.items()}, table_text=text, params=params)
    print(f"\nrecords, table and HTML report in {out_dir}\nHTML report: {html_path}")
    return 0 if results and all(v["summary"]["ok"] == v["summary"]["requests"] for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
