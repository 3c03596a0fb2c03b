"""The KV-offload experiment in the shape of the seed's (AIBrix KV cache,
Workload 2/3): a multi-turn workload whose unique KV is many times the pods'
KV capacity, mean and P99 TTFT at rising session rates, for four setups:

  no prefix cache      engines recompute every prompt
  prefix cache         each engine's own (device) prefix cache only
  + L1 agent           + a node agent per node (host DRAM tier), shared by the node's pods
  + L1 + L2            + L2 cache servers on a consistent-hash ring, shared by every node

Engine timing is simulated (vllm-sim's engine model and latency profile; a
loaded block is charged modelled host-to-device transfer time instead of its
prefill); the cache tier is real: switchboard-kv-agent and
switchboard-kv-server processes, the real protocol and keys, small payloads.
Requests go through the real Envoy and Switchboard (`random`, so a session's
turns land on any pod, on either node). Every run starts cold (fresh
processes). Nothing is asserted: read the table."""
import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "toolkit"))
from harness import Proc, Stack, binary, free_port, free_ports, wait_port, wait_unix  # noqa: E402
from sbbench import client as client_mod  # noqa: E402
from sbbench import datasets, report, workloads  # noqa: E402

SETUPS = ["no-prefix-cache", "prefix-cache", "l1", "l1-l2"]
LABELS = {"no-prefix-cache": "no prefix cache", "prefix-cache": "prefix cache only", "l1": "+ L1 agent",
          "l1-l2": "+ L1 + L2"}
PAYLOAD = 4096


class Run:
    """One setup's processes: L2 servers, node agents, simulator processes (one per node)."""

    def __init__(self, args, setup, logdir):
        self.procs, self.agent_admin = [], []
        members = []
        if setup == "l1-l2":
            for i in range(args.l2_servers):
                port = free_port()
                self.procs.append(Proc(f"kv-server-{i}", [
                    binary("switchboard-kv-server"), "--listen", f"127.0.0.1:{port}", "--block-bytes", str(PAYLOAD),
                    "--capacity", str(args.l2_blocks * PAYLOAD), "--metrics-listen", ""], logdir))
                wait_port(port)
                members.append(f"127.0.0.1:{port}")
        self.ports = []
        for node in range(args.nodes):
            sim_args = [binary("vllm-sim"), "--profile", args.profile, "--speed", str(args.speed),
                        "--kv-blocks", str(args.kv_blocks), "--max-model-len", "32768", "--seed", str(node),
                        "--max-num-batched-tokens", str(args.max_num_batched_tokens)]
            if setup == "no-prefix-cache":
                sim_args.append("--no-prefix-caching")
            if setup in ("l1", "l1-l2"):
                sock = os.path.join(logdir, f"kv-node{node}.sock")
                admin = free_port()
                agent = [binary("switchboard-kv-agent"), "--socket", sock, "--block-bytes", str(PAYLOAD),
                         "--capacity", str(args.l1_blocks * PAYLOAD), "--metrics-listen", f"127.0.0.1:{admin}"]
                if members:
                    agent += ["--l2", ",".join(members), "--l2-replicas", "1", "--l2-read-timeout-ms", "200"]
                self.procs.append(Proc(f"kv-agent-node{node}", agent, logdir))
                wait_unix(sock)
                wait_port(admin)
                self.agent_admin.append(admin)
                sim_args += ["--kv-agent-socket", sock, "--kv-block-bytes", str(PAYLOAD),
                             "--kv-model-block-bytes", str(args.model_block_bytes), "--kv-load-gbps", str(args.load_gbps)]
            ports = free_ports(args.pods // args.nodes)
            for p in ports:
                sim_args += ["--listen", f"127.0.0.1:{p}"]
            self.procs.append(Proc(f"vllm-sim-node{node}", sim_args, logdir))
            for p in ports:
                wait_port(p)
            self.ports += ports
        if members:
            for admin in self.agent_admin:
                deadline = time.monotonic() + 20
                while agent_stats(admin).get("l2", {}).get("members_up") != len(members):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"agent on :{admin} did not admit the L2 servers")
                    time.sleep(0.05)

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


def agent_stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())


def pod_counters(port):
    """(prompt tokens, locally cached tokens, external hit tokens) from a pod's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    vals = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("vllm:prompt_tokens_total", "vllm:prefix_cache_hits_total", "vllm:external_prefix_cache_hits_total"):
            vals[name] = vals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return (vals.get("vllm:prompt_tokens_total", 0.0), vals.get("vllm:prefix_cache_hits_total", 0.0),
            vals.get("vllm:external_prefix_cache_hits_total", 0.0))


def measure(args, setup, rate, rows, logdir):
    run = Run(args, setup, logdir)
    try:
        with Stack(pod_ports=run.ports, logdir=tempfile.mkdtemp(prefix=f"{setup}-{rate}-", dir=logdir)) as stack:
            time.sleep(1.0)  # one scrape of every pod before traffic
            import random
            arrivals = workloads.poisson_arrivals(random.Random(args.seed), rate, count=len(rows))
            reqs = workloads.from_dataset(rows, arrivals, max_tokens=args.max_tokens, think_ms=args.think_ms)
            c = client_mod.Client(f"http://127.0.0.1:{stack.envoy_port}", "tiny", api="chat", stream=True,
                                  strategy="random", timeout=args.timeout)
            records = asyncio.run(client_mod.run(reqs, c, progress=not args.quiet))
            counters = [pod_counters(p) for p in run.ports]
            prompt = sum(x[0] for x in counters)
            local = sum(x[1] for x in counters)
            external = sum(x[2] for x in counters)
            l2_hits = sum(agent_stats(a).get("l2", {}).get("hits", 0) for a in run.agent_admin)
            return {"summary": report.summarize(records), "local": local / prompt if prompt else 0.0,
                    "external": external / prompt if prompt else 0.0, "l2_blocks": l2_hits}
    finally:
        run.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1,2,4", help="session arrival rates (sessions/s), comma-separated")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--pods", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=80)
    ap.add_argument("--turns", type=float, default=5)
    ap.add_argument("--prompt-length", type=int, default=300, help="words per turn (mean)")
    ap.add_argument("--system-prefix", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--think-ms", type=float, default=500.0)
    ap.add_argument("--profile", default="a100-llama3-8b")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--kv-blocks", type=int, default=256, help="KV blocks per pod (16 tokens each)")
    ap.add_argument("--max-num-batched-tokens", type=int, default=8192)
    ap.add_argument("--l1-blocks", type=int, default=2048, help="blocks per node agent")
    ap.add_argument("--l2-servers", type=int, default=2)
    ap.add_argument("--l2-blocks", type=int, default=32768, help="blocks per L2 server")
    ap.add_argument("--model-block-bytes", type=int, default=2 << 20)
    ap.add_argument("--load-gbps", type=float, default=16.0)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    rows = datasets.multiturn(num_sessions=args.sessions, turns_mean=args.turns, turns_std=1.0,
                              prompt_length=args.prompt_length, prompt_length_std=args.prompt_length // 3,
                              system_prefix_length=args.system_prefix, seed=args.seed)
    # Unique KV: every session's final context (the simulator: one token per word, a few per message).
    unique = sum(sum(len(p.split()) + 2 for p in r["prompts"]) + len(r["prompts"]) * (args.max_tokens + 2) for r in rows)
    capacity = args.pods * args.kv_blocks * 16
    rates = [float(x) for x in args.rates.split(",")]
    setups = [s for s in args.setups.split(",") if s]
    print(f"workload: {len(rows)} sessions, {sum(len(r['prompts']) for r in rows)} turns, ~{unique} unique tokens of KV = "
          f"{unique / capacity:.1f}x the pods' KV ({args.pods} pods x {args.kv_blocks} blocks x 16 tokens); "
          f"{args.nodes} nodes; L1 {args.l1_blocks} blocks per node agent; L2 {args.l2_servers} servers x {args.l2_blocks} blocks; "
          f"loads charged {args.model_block_bytes} bytes per block at {args.load_gbps} GB/s", flush=True)
    logdir = tempfile.mkdtemp(prefix="bench-kv-offload-")
    results = {}
    for rate in rates:
        for setup in setups:
            r = measure(args, setup, rate, rows, logdir)
            results[(setup, rate)] = r
            s = r["summary"]
            t = s["ttft_ms"] or {}
            print(f"{LABELS[setup]:18} {rate:>5} sessions/s: {s['ok']}/{s['requests']} ok, TTFT mean {t.get('mean', 0):.0f} ms, "
                  f"p99 {t.get('p99', 0):.0f} ms; prompt tokens cached locally {r['local'] * 100:.0f}%, "
                  f"loaded by the connector {r['external'] * 100:.0f}%", flush=True)
    head = f"{'setup':20}" + "".join(f"{f'{x}/s mean':>13}{f'{x}/s p99':>12}" for x in rates)
    lines = ["", "TTFT in ms (engine timing simulated, cache tier real)", head, "-" * len(head)]
    for setup in setups:
        cells = ""
        for rate in rates:
            t = results[(setup, rate)]["summary"]["ttft_ms"] or {}
            cells += f"{t.get('mean', 0):>13.0f}{t.get('p99', 0):>12.0f}"
        lines.append(f"{LABELS[setup]:20}{cells}")
    base = {rate: (results.get(("prefix-cache", rate), {}).get("summary", {}).get("ttft_ms") or {}).get("mean") for rate in rates}
    if all(base.values()):
        for setup in setups:
            lines.append(f"{LABELS[setup] + ' / prefix cache':38}" + "".join(
                f"{(results[(setup, r)]['summary']['ttft_ms'] or {}).get('mean', 0) / base[r]:>12.2f}x" for r in rates))
    print("\n".join(lines))
    failed = [k for k, v in results.items() if v["summary"]["ok"] != v["summary"]["requests"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
