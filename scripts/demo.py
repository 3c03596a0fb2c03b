"""Drives the demo stack (see scripts/demo) and prints a summary."""
import argparse
import collections
import http.client
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "integration"))
from harness import Stack, chat  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    demo_dir = tempfile.mkdtemp(prefix="switchboard-demo-")
    users = os.path.join(demo_dir, "users.json")
    with open(users, "w") as f:
        json.dump([{"name": "demo-user", "rpm": 5, "tpm": 100000}], f)
    with Stack(pods=3, ttft_ms=15, itl_ms=2, max_tokens=12, logdir=demo_dir,
               switchboard_args=["--users-file", users]) as s:
        print(f"stack up: Envoy :{s.envoy_port} -> switchboard :{s.grpc_port} (ext_proc, h2c) -> "
              f"pods {', '.join(str(p) for p in s.pod_ports)}   logs in {s.logdir}")
        lat, ttft = collections.defaultdict(list), []
        spread, statuses = collections.Counter(), collections.Counter()
        lock = threading.Lock()
        jobs = list(range(args.requests))

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", s.envoy_port, timeout=30)
            while True:
                with lock:
                    if not jobs:
                        break
                    i = jobs.pop()
                stream = i % 3 == 0
                body = json.dumps(chat(content=f"request {i}: tell me a story", stream=stream,
                                       stream_options={"include_usage": True} if stream else None)).encode()
                t0 = time.perf_counter()
                conn.request("POST", "/v1/chat/completions", body=body,
                             headers={"content-type": "application/json", "routing-strategy": "random"})
                r = conn.getresponse()
                first = None
                if stream:
                    while True:
                        line = r.readline()
                        if first is None and line.startswith(b"data: ") and b'"content":"' in line and b'"content":""' not in line:
                            first = time.perf_counter() - t0
                        if not line:
                            break
                else:
                    r.read()
                dt = time.perf_counter() - t0
                with lock:
                    statuses[r.status] += 1
                    if r.status == 200:
                        spread[r.getheader("x-switchboard-pod")] += 1
                        lat["stream" if stream else "plain"].append(dt)
                        if first is not None:
                            ttft.append(first)
            conn.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0

        print(f"\nsent {args.requests} chat requests ({args.concurrency} concurrent) in {wall:.2f}s "
              f"= {args.requests / wall:.0f} req/s; statuses {dict(statuses)}")
        print("\nrequests per pod (strategy: random)")
        for pod, n in sorted(spread.items()):
            print(f"  {pod:<22} {n:>5}  {'#' * int(50 * n / max(spread.values()))}")
        print("\nlatency through Envoy + switchboard (ms)     p50     p90     p99")
        for kind, xs in sorted(lat.items()):
            print(f"  {kind + ' end-to-end':<38} {1000 * pct(xs, 50):7.1f} {1000 * pct(xs, 90):7.1f} {1000 * pct(xs, 99):7.1f}")
        if ttft:
            print(f"  {'stream time to first token':<38} {1000 * pct(ttft, 50):7.1f} {1000 * pct(ttft, 90):7.1f} {1000 * pct(ttft, 99):7.1f}")

        print("\nprefix-cache: 6 conversations with a 300-word shared prefix, 6 follow-ups each;"
              "\nfollow-ups that reached the pod holding their prefix (random for comparison):")
        for strategy in ("prefix-cache", "random"):
            home, stuck = {}, 0
            for turn in range(7):
                for g in range(6):
                    text = " ".join(f"{strategy[:3]}{g}w{i}" for i in range(300)) + f" turn {turn}"
                    _, h, _ = s.request(chat(content=text, max_tokens=2), headers={"routing-strategy": strategy})
                    pod = h.get("x-switchboard-pod")
                    if turn == 0:
                        home[g] = pod
                    elif pod == home[g]:
                        stuck += 1
            print(f"  {strategy:<13} {stuck:>2} of 36")

        print("\nper-user limits (users.json: demo-user may send 5 requests a minute):")
        codes = []
        for i in range(8):
            st, h, _ = s.request(chat(max_tokens=2, user="demo-user"))
            codes.append(st)
        print(f"  8 requests -> {codes}; the 429s say retry-after {h.get('retry-after')}s, "
              f"x-ratelimit-remaining-requests {h.get('x-ratelimit-remaining-requests')}")

        print("\nerrors come back OpenAI-shaped:")
        for label, kw in [("unknown model", dict(body=chat(model="gpt-unknown"))),
                          ("malformed JSON", dict(body=b'{"model": "tiny", "messages": [')),
                          ("unknown strategy", dict(body=chat(), headers={"routing-strategy": "psychic"}))]:
            st, _, p = s.request(**kw)
            print(f"  {label:<17} -> {st} {json.loads(p)['error']['code']}")
        st, h, _ = s.request(chat(), headers={"target-pod": f"127.0.0.1:{s.trap_port}"})
        print(f"  spoofed target-pod ignored -> {st}, served by {h.get('x-switchboard-pod')}")
        stats = s.stats()
        print(f"\nEnvoy: ext_proc connections {stats['cluster.switchboard.upstream_cx_total']}, "
              f"protocol errors {stats['cluster.switchboard.upstream_cx_protocol_error']}, "
              f"5xx {stats.get('http.openai.downstream_rq_5xx', 0)}")
    print("stopped everything.")
    return 0 if statuses.get(200, 0) == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
