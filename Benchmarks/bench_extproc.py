"""ext_proc benchmark (see scripts/bench-extproc). Prints, from one run on
the same Envoy binary and the same simulated upstream:
  1. Envoy alone (no ext_proc; round robin to the pods): the ceiling.
  2. Envoy + switchboard (ext_proc over h2c): the default path (the routing
     stream ends at the decision: two messages), the same with usage
     accounting (Envoy's observer reads every response, never waited on),
     and the path before issue 19 (in-band: the routing stream also answers
     the response phases, with usage accounting), side by side.
  3. Envoy + the Python grpc.aio reference processor (Benchmarks/peers).
  4. Direct gRPC load without Envoy (h2load): ext_proc exchanges per second,
     and per CPU-second of the processor (= per core).
Nothing here is asserted: machines are noisy, read the ratios."""
import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "integration"))
from harness import Proc, binary, cpu_seconds, envoy_binary, free_port, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def chat_body(size=4096, stream=False):
    base = {"model": "tiny", "messages": [{"role": "system", "content": "You are helpful."},
                                          {"role": "user", "content": ""}], "max_tokens": 4}
    if stream:
        base["stream"] = True
    pad = size - len(json.dumps(base))
    base["messages"][1]["content"] = ("lorem ipsum dolor sit amet " * (pad // 27 + 1))[:pad]
    return json.dumps(base).encode()


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[u]


def wrk(port, seconds, conns, lua):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", lua,
                          f"http://127.0.0.1:{port}/v1/chat/completions"],
                         capture_output=True, text=True, check=True).stdout
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
         "requests": int(re.search(r"(\d+) requests in", out).group(1)),
         "p50": to_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
         "p99": to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: .*", out)
    r["non2xx"] = int(bad.group(1)) if bad else 0
    r["socket_errors"] = errs.group(0) if errs else ""
    return r


def h2load(port, seconds, payload, conns=4, streams=32):
    out = subprocess.run(["h2load", "-D", str(seconds), "-c", str(conns), "-m", str(streams), "-t", "1",
                          "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", payload,
                          f"http://127.0.0.1:{port}/envoy.service.ext_proc.v3.ExternalProcessor/Process"],
                         capture_output=True, text=True).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    secs = float(re.search(r"finished in ([\d.]+)s", out).group(1))
    return {"done": int(m.group(3)), "ok": int(m.group(4)), "failed": int(m.group(5)), "seconds": secs}


ENVOY_ALONE = """
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    per_connection_buffer_limit_bytes: 8388608
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: openai
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: pods}}}}]}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: pods
    type: STATIC
    connect_timeout: 1s
    circuit_breakers: {{thresholds: [{{max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}}]}}
    load_assignment:
      cluster_name: pods
      endpoints: [{{lb_endpoints: [{eps}]}}]
"""


def peer_runs(a, spawn, pods, lua):
    """sglang-router and vllm-router (round_robin) in front of the same pods,
    each measured like Envoy alone: wrk through it, its CPU per request.
    Each gets its own Prometheus port (both default to 29000)."""
    urls = [f"http://127.0.0.1:{p}" for p in pods]
    out = {}
    for label, cmd in [("sglang-router rr", [os.path.join(a.peers, "sglang-router"), "launch", "--log-level", "warn"]),
                       ("vllm-router rr", [os.path.join(a.peers, "vllm-router")])]:
        port, prom = free_port(), free_port()
        p = spawn(label.split()[0], cmd + ["--policy", "round_robin", "--host", "127.0.0.1", "--port", str(port),
                                           "--prometheus-port", str(prom), "--worker-urls"] + urls)
        wait_port(port, timeout=60)
        wrk(port, 2, a.connections, lua)  # warm-up
        c0 = cpu_seconds(p.pid)
        r = wrk(port, a.seconds, a.connections, lua)
        r["cpu_us"] = (cpu_seconds(p.pid) - c0) * 1e6 / max(1, r["requests"])
        out[label] = r
        p.stop()
    return out


def spawner(d):
    """A list of started processes (stop them in reverse) and the function that starts one, logging to d."""
    procs = []

    def spawn(name, args):
        p = Proc(name, args, d)
        procs.append(p)
        return p
    return procs, spawn


def start_pods(d, spawn, extra=()):
    """Three simulated pods (fixed timing, 4 tokens unless extra says) and a pods file naming them."""
    pods = [free_port() for _ in range(3)]
    pods_file = os.path.join(d, "pods.yaml")
    with open(pods_file, "w") as f:
        f.write("models:\n  - name: tiny\n    endpoints: [" + ", ".join(f"127.0.0.1:{p}" for p in pods) + "]\n")
    spawn("vllm-sim", [binary("vllm-sim"), "--loops", "1", "--profile", "fixed", "--max-tokens", "4"] + list(extra)
          + sum((["--listen", f"127.0.0.1:{p}"] for p in pods), []))
    for p in pods:
        wait_port(p)
    return pods, pods_file


# A collector stand-in for --tracing: accepts OTLP/HTTP posts, answers 200, keeps nothing.
OTLP_SINK = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--baseline", metavar="BIN_DIR",
                    help="a directory holding a baseline build's switchboard binary: it runs side by side with "
                         "this build (interleaved, --rounds each) and the ratios are printed")
    ap.add_argument("--rounds", type=int, default=None,
                    help="runs of each switchboard build through Envoy (default 1, or 3 with --baseline); "
                         "the median processor CPU per request is compared")
    ap.add_argument("--no-python-peer", action="store_true", help="skip the Python grpc.aio peer")
    ap.add_argument("--peers", metavar="BIN_DIR",
                    help="a directory with sglang-router and vllm-router (scripts/setup-peers): each runs round_robin "
                         "against the same pods, and total CPU per request is compared with Envoy + switchboard")
    ap.add_argument("--no-direct", action="store_true", help="skip the direct gRPC (h2load) runs")
    ap.add_argument("--stream", action="store_true",
                    help="streamed requests: 64 tokens per response, one SSE event each, 1 ms apart (default: non-streamed, 4 tokens)")
    ap.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy worker threads (--concurrency)")
    ap.add_argument("--no-in-band", action="store_true",
                    help="skip the in-band run (the routing stream also answering the response phases)")
    ap.add_argument("--limits", action="store_true",
                    help="also run per-user limits (every request from one user with limits it never reaches): the "
                         "in-process store and Redis on loopback, beside the same build with limits off; prints the admission cost")
    ap.add_argument("--shared-state", action="store_true",
                    help="also run prefix-cache routing with and without serve --shared-state (Redis on loopback, one "
                         "replica: its exchange and its events' cost on the request path); prints the difference")
    ap.add_argument("--tracing", action="store_true",
                    help="also run with serve --otlp-endpoint (every request sampled; spans exported to a local sink "
                         "that answers 200) beside the same build without tracing; prints the difference")
    ap.add_argument("--request-logs", action="store_true",
                    help="also run with the per-request log line on (--log-level info --log-format logfmt, written to a "
                         "file as a container runtime would) beside the same build at warning; prints the difference")
    ap.add_argument("--sizes", metavar="BYTES,...",
                    help="instead of the comparison: processor CPU per request through Envoy for chat bodies of "
                         "these sizes, streamed and not, with the response phase on (e.g. 1024,32768,409600)")
    a = ap.parse_args()
    if a.sizes:
        return size_sweep(a)
    rounds = a.rounds or (3 if a.baseline else 1)
    d = tempfile.mkdtemp(prefix="switchboard-bench-")
    procs, spawn = spawner(d)
    try:
        pods, pods_file = start_pods(d, spawn, ["--max-tokens", "64", "--itl-ms", "1"] if a.stream else [])
        body = chat_body(stream=a.stream)
        lua = os.path.join(d, "post.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    + ('wrk.headers["user"] = "bench"\n' if a.limits else "")
                    + f"wrk.body = {json.dumps(body.decode())}\n")

        def envoy_run(config_text, label, processor=None):
            port, admin = free_port(), free_port()
            cfg = os.path.join(d, f"envoy-{label}.yaml")
            text = config_text(port, admin)
            with open(cfg, "w") as f:
                f.write(text)
            e = spawn(f"envoy-{label}", [envoy_binary(), "-c", cfg, "--concurrency", str(a.envoy_concurrency), "-l", "error",
                                         "--base-id", str(free_port())])
            wait_port(port)
            wrk(port, 2, a.connections, lua)  # warm-up
            c0 = cpu_seconds(processor.pid) if processor else 0
            e0 = cpu_seconds(e.pid)
            r = wrk(port, a.seconds, a.connections, lua)
            r["proc_cpu_us"] = (cpu_seconds(processor.pid) - c0) * 1e6 / r["requests"] if processor else None
            r["envoy_cpu_us"] = (cpu_seconds(e.pid) - e0) * 1e6 / r["requests"]
            e.stop()
            return r

        def rendered(processor_addr, phase="observer"):
            def make(port, admin):
                return subprocess.run([binary("switchboard"), "envoy-config", "--listen", f"127.0.0.1:{port}",
                                       "--admin", f"127.0.0.1:{admin}", "--processor", processor_addr,
                                       "--response-phase", phase],
                                      capture_output=True, text=True, check=True).stdout
            return make

        results = {}
        eps = ", ".join(f"{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}}}" for p in pods)
        results["Envoy alone"] = envoy_run(lambda port, admin: ENVOY_ALONE.format(port=port, admin=admin, eps=eps), "alone")
        peers = {}
        if a.peers:
            peers = peer_runs(a, spawn, pods, lua)

        def start_gateway(path, label, extra=(), log_level="warning"):
            port = free_port()
            p = spawn(label, [path, "serve", "--pods-file", pods_file, "--listen", f"127.0.0.1:{port}", "--loops", "1",
                              "--log-level", log_level, "--admin-listen", "off"] + list(extra))
            wait_port(port)
            return p, port

        sb, sb_port = start_gateway(binary("switchboard"), "switchboard")
        builds = [("Envoy + switchboard", sb, sb_port)]
        if a.baseline:
            base, base_port = start_gateway(os.path.join(a.baseline, "switchboard"), "switchboard-baseline")
            builds.append(("Envoy + baseline", base, base_port))
        runs = {label: [] for label, _, _ in builds}
        if not a.no_in_band:
            # The same build reading usage: through the observer, and in-band (the path before).
            su, su_port = start_gateway(binary("switchboard"), "switchboard-usage", ["--usage-accounting"])
            runs["Envoy + sb +usage"] = []
            runs["Envoy + sb in-band"] = []
        rport = None

        def redis_port():
            nonlocal rport
            if rport is None:
                rport = free_port()
                spawn("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", d])
                wait_port(rport)
            return rport
        if a.tracing:
            sink_port = free_port()
            spawn("otlp-sink", [sys.executable, "-c", OTLP_SINK, str(sink_port)])
            wait_port(sink_port)
            tr, tr_port = start_gateway(binary("switchboard"), "switchboard-tracing",
                                        ["--otlp-endpoint", f"http://127.0.0.1:{sink_port}/v1/traces"])
            runs["Envoy + sb tracing"] = []
        if a.request_logs:
            rl, rl_port = start_gateway(binary("switchboard"), "switchboard-request-logs", ["--log-format", "logfmt"], log_level="info")
            runs["Envoy + sb request logs"] = []
        if a.shared_state:
            pc, pc_port = start_gateway(binary("switchboard"), "switchboard-prefix", ["--default-strategy", "prefix-cache"])
            ss, ss_port = start_gateway(binary("switchboard"), "switchboard-shared",
                                        ["--default-strategy", "prefix-cache", "--redis", f"127.0.0.1:{redis_port()}", "--shared-state"])
            runs["Envoy + sb prefix-cache"] = []
            runs["Envoy + sb prefix-cache shared"] = []
        if a.limits:
            users = os.path.join(d, "users.json")
            with open(users, "w") as f:
                json.dump([{"name": "bench", "rpm": 1_000_000_000, "tpm": 1_000_000_000_000}], f)
            le, le_port = start_gateway(binary("switchboard"), "switchboard-limits", ["--users-file", users])
            subprocess.run([binary("switchboard"), "users", "--redis", f"127.0.0.1:{redis_port()}", "add", "bench", "--rpm", "1000000000",
                            "--tpm", "1000000000000"], check=True, capture_output=True)
            lr, lr_port = start_gateway(binary("switchboard"), "switchboard-limits-redis", ["--redis", f"127.0.0.1:{rport}"])
            runs["Envoy + sb limits"] = []
            runs["Envoy + sb limits redis"] = []
        for i in range(rounds):  # interleaved, so drift on a noisy machine hits both builds alike
            if a.request_logs:
                runs["Envoy + sb request logs"].append(envoy_run(rendered(f"127.0.0.1:{rl_port}"), f"request-logs-{i}", rl))
            if a.tracing:
                runs["Envoy + sb tracing"].append(envoy_run(rendered(f"127.0.0.1:{tr_port}"), f"tracing-{i}", tr))
            if a.shared_state:
                runs["Envoy + sb prefix-cache"].append(envoy_run(rendered(f"127.0.0.1:{pc_port}"), f"prefix-{i}", pc))
                runs["Envoy + sb prefix-cache shared"].append(envoy_run(rendered(f"127.0.0.1:{ss_port}"), f"shared-{i}", ss))
            if a.limits:
                runs["Envoy + sb limits"].append(envoy_run(rendered(f"127.0.0.1:{le_port}"), f"limits-{i}", le))
                runs["Envoy + sb limits redis"].append(envoy_run(rendered(f"127.0.0.1:{lr_port}"), f"limits-redis-{i}", lr))
            for label, proc, port in builds:
                runs[label].append(envoy_run(rendered(f"127.0.0.1:{port}"), f"{label.split()[-1]}-{i}", proc))
            if not a.no_in_band:
                runs["Envoy + sb +usage"].append(envoy_run(rendered(f"127.0.0.1:{su_port}"), f"usage-{i}", su))
                runs["Envoy + sb in-band"].append(envoy_run(rendered(f"127.0.0.1:{su_port}", "in-band"), f"in-band-{i}", su))
        for label, rs in runs.items():
            rs.sort(key=lambda r: r["proc_cpu_us"])
            results[label] = rs[len(rs) // 2]
            results[label]["all_cpu_us"] = [r["proc_cpu_us"] for r in rs]

        py = None
        if not a.no_python_peer:
            py_port = free_port()
            py = spawn("python-peer", [sys.executable, os.path.join(ROOT, "Benchmarks", "peers", "python_extproc.py"),
                                       "--listen", f"127.0.0.1:{py_port}", "--pods-file", pods_file])
            wait_port(py_port)
            results["Envoy + Python peer"] = envoy_run(rendered(f"127.0.0.1:{py_port}"), "python", py)

        # Direct gRPC: each stream carries two messages (request headers, then
        # the 4 KB buffered body) and gets two answers (continue, then the
        # target-pod mutation), as Envoy's BUFFERED mode would.
        from envoy.config.core.v3 import base_pb2
        from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
        hs = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in [
            (":path", "/v1/chat/completions"), (":method", "POST"), ("content-type", "application/json"),
            ("x-request-id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")]])
        msgs = [ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=hs)).SerializeToString(),
                ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=True)).SerializeToString()]
        payload = os.path.join(d, "exchange.bin")
        with open(payload, "wb") as f:
            f.write(b"".join(struct.pack(">BI", 0, len(m)) + m for m in msgs))
        direct = {}
        direct_targets = [] if a.no_direct else [("switchboard", sb, sb_port)] \
            + ([("baseline", base, base_port)] if a.baseline else []) + ([("Python peer", py, py_port)] if py else [])
        for label, proc, port in direct_targets:
            h2load(port, 2, payload)
            runs = []
            for _ in range(3):  # this machine is noisy: three runs, report median and best
                c0 = cpu_seconds(proc.pid)
                r = h2load(port, max(3, a.seconds // 2), payload)
                cpu = cpu_seconds(proc.pid) - c0
                r["exchanges_per_s"] = 2 * r["ok"] / r["seconds"]
                r["exchanges_per_cpu_s"] = 2 * r["ok"] / cpu if cpu > 0 else float("nan")
                runs.append(r)
            runs.sort(key=lambda r: r["exchanges_per_cpu_s"])
            best, median = runs[-1], runs[1]
            direct[label] = {"ok": sum(r["ok"] for r in runs), "failed": sum(r["failed"] for r in runs),
                             "exchanges_per_s": median["exchanges_per_s"],
                             "exchanges_per_cpu_s": median["exchanges_per_cpu_s"],
                             "best_per_cpu_s": best["exchanges_per_cpu_s"]}

        kind = "streamed (64 SSE events)" if a.stream else "non-streamed"
        print(f"\next_proc benchmark: {a.seconds}s per run, wrk -t1 -c{a.connections}, 4 KB {kind} chat body, "
              f"Envoy --concurrency {a.envoy_concurrency}, processors on 1 event loop, {os.cpu_count()} cores\n")
        print(f"{'':<31}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'proc CPU µs/req':>17}{'Envoy CPU µs/req':>18}")
        for k, r in results.items():
            cpu = f"{r['proc_cpu_us']:.1f}" if r["proc_cpu_us"] is not None else "-"
            print(f"{k:<31}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>9}{cpu:>17}{r['envoy_cpu_us']:>18.1f}")
        for k, r in peers.items():
            print(f"{k:<31}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>9}{r['cpu_us']:>17.1f}{'-':>18}")
        sbr, al = results["Envoy + switchboard"], results["Envoy alone"]
        total = sbr["proc_cpu_us"] + sbr["envoy_cpu_us"]
        if peers:
            best = min(peers.items(), key=lambda kv: kv[1]["cpu_us"])
            print(f"\ntotal CPU per request: Envoy + switchboard {total:.1f} µs (Envoy {sbr['envoy_cpu_us']:.1f} + processor "
                  f"{sbr['proc_cpu_us']:.1f}); best peer {best[0]} {best[1]['cpu_us']:.1f} µs; ratio {total / best[1]['cpu_us']:.2f}x "
                  f"[goal <= 1.2x: {'met' if total <= 1.2 * best[1]['cpu_us'] else 'not met'}]; "
                  f"p99 {sbr['p99']:.2f} vs {best[1]['p99']:.2f} ms "
                  f"[goal no worse: {'met' if sbr['p99'] <= best[1]['p99'] else 'not met'}]")
        print(f"processor CPU per request {sbr['proc_cpu_us']:.1f} µs "
              f"[goal <= 20 µs: {'met' if sbr['proc_cpu_us'] <= 20 else 'not met'}]")
        if "Envoy + sb in-band" in results:
            ib, us = results["Envoy + sb in-band"], results["Envoy + sb +usage"]
            ib_total = ib["proc_cpu_us"] + ib["envoy_cpu_us"]
            us_total = us["proc_cpu_us"] + us["envoy_cpu_us"]
            print(f"default / before (in-band with usage): total CPU per request {total:.1f} / {ib_total:.1f} µs = "
                  f"{total / ib_total:.2f}x; req/s {sbr['rps'] / ib['rps']:.2f}x; p99 {sbr['p99']:.2f} / {ib['p99']:.2f} ms")
            line = (f"with usage: observer / in-band total CPU per request {us_total:.1f} / {ib_total:.1f} µs = "
                    f"{us_total / ib_total:.2f}x")
            if peers:
                line += f"; observer / best peer = {us_total / best[1]['cpu_us']:.2f}x"
            print(line)
        if a.limits:
            for label in ("Envoy + sb limits", "Envoy + sb limits redis"):
                lr_ = results[label]
                print(f"admission cost, {label.split('limits')[1].strip() or 'in process'}: processor CPU "
                      f"{lr_['proc_cpu_us']:.1f} vs {sbr['proc_cpu_us']:.1f} µs/req with limits off (+{lr_['proc_cpu_us'] - sbr['proc_cpu_us']:.1f}); "
                      f"p50 {lr_['p50']:.2f} vs {sbr['p50']:.2f} ms, p99 {lr_['p99']:.2f} vs {sbr['p99']:.2f} ms "
                      f"(the limited user's responses are read for usage: compare with '+usage' too)")
        if a.tracing:
            t = results["Envoy + sb tracing"]
            print(f"tracing cost (every request sampled and exported): processor CPU {t['proc_cpu_us']:.1f} vs "
                  f"{sbr['proc_cpu_us']:.1f} µs/req without (+{t['proc_cpu_us'] - sbr['proc_cpu_us']:.1f}); "
                  f"p50 {t['p50']:.2f} vs {sbr['p50']:.2f} ms, p99 {t['p99']:.2f} vs {sbr['p99']:.2f} ms")
        if a.request_logs:
            t = results["Envoy + sb request logs"]
            print(f"request log cost (one logfmt line per request at info, to a file): processor CPU {t['proc_cpu_us']:.1f} vs "
                  f"{sbr['proc_cpu_us']:.1f} µs/req at warning (+{t['proc_cpu_us'] - sbr['proc_cpu_us']:.1f}); "
                  f"p50 {t['p50']:.2f} vs {sbr['p50']:.2f} ms, p99 {t['p99']:.2f} vs {sbr['p99']:.2f} ms")
        if a.shared_state:
            pr, sr = results["Envoy + sb prefix-cache"], results["Envoy + sb prefix-cache shared"]
            print(f"shared state cost (prefix-cache): processor CPU {sr['proc_cpu_us']:.1f} vs {pr['proc_cpu_us']:.1f} µs/req "
                  f"without sharing (+{sr['proc_cpu_us'] - pr['proc_cpu_us']:.1f}); p50 {sr['p50']:.2f} vs {pr['p50']:.2f} ms, "
                  f"p99 {sr['p99']:.2f} vs {pr['p99']:.2f} ms")
        print(f"\nratios: switchboard / Envoy alone = {sbr['rps'] / al['rps']:.2f}", end="")
        if py:
            pyr = results["Envoy + Python peer"]
            print(f"   switchboard / Python peer = {sbr['rps'] / pyr['rps']:.2f}x   "
                  f"p99 Python / switchboard = {pyr['p99'] / sbr['p99']:.1f}x", end="")
        print()
        if a.baseline:
            br = results["Envoy + baseline"]
            print(f"processor CPU µs/req, {rounds} interleaved runs each (median compared): "
                  f"this build {['%.1f' % x for x in sbr['all_cpu_us']]}, baseline {['%.1f' % x for x in br['all_cpu_us']]}")
            print(f"ratio: this build / baseline processor CPU per request = {sbr['proc_cpu_us'] / br['proc_cpu_us']:.3f} "
                  f"(< 1 is cheaper); req/s ratio = {sbr['rps'] / br['rps']:.3f}")
        if not direct:
            print(f"logs: {d}")
            return
        print("\ndirect gRPC (h2load -c4 -m32, no Envoy), 2 exchanges per stream, median of 3 runs (best in brackets):")
        print(f"{'':<22}{'streams ok':>12}{'failed':>8}{'exchanges/s':>14}{'exchanges per CPU-s (= per core)':>36}")
        for k, r in direct.items():
            per = f"{r['exchanges_per_cpu_s']:.0f} [{r['best_per_cpu_s']:.0f}]"
            print(f"{k:<22}{r['ok']:>12}{r['failed']:>8}{r['exchanges_per_s']:>14.0f}{per:>36}")
        if py:
            print(f"\nratio: switchboard / Python peer exchanges/s = "
                  f"{direct['switchboard']['exchanges_per_s'] / direct['Python peer']['exchanges_per_s']:.1f}x")
        if a.baseline:
            print(f"ratio: switchboard / baseline exchanges per CPU-s = "
                  f"{direct['switchboard']['exchanges_per_cpu_s'] / direct['baseline']['exchanges_per_cpu_s']:.3f} (> 1 is cheaper)")
        print(f"logs: {d}")
    finally:
        for p in reversed(procs):
            p.stop()


def size_sweep(a):
    """Processor CPU per request for each body size, plain and streamed,
    through Envoy; with --baseline, the baseline build side by side."""
    sizes = [int(x) for x in a.sizes.split(",")]
    d = tempfile.mkdtemp(prefix="switchboard-bench-sizes-")
    procs, spawn = spawner(d)
    try:
        _, pods_file = start_pods(d, spawn, ["--max-model-len", "1000000"])
        builds = [("this build", binary("switchboard"))]
        if a.baseline:
            builds.append(("baseline", os.path.join(a.baseline, "switchboard")))
        gateways = []
        for label, path in builds:
            port = free_port()
            g = spawn(label.replace(" ", "-"), [path, "serve", "--pods-file", pods_file, "--listen", f"127.0.0.1:{port}",
                                                "--loops", "1", "--log-level", "warning", "--admin-listen", "off"])
            wait_port(port)
            gateways.append((label, g, port))
        rows = []
        for size in sizes:
            for stream in (False, True):
                body = chat_body(size, stream)
                lua = os.path.join(d, f"post-{size}-{stream}.lua")
                with open(lua, "w") as f:
                    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                            f"wrk.body = {json.dumps(body.decode())}\n")
                row = {"size": size, "stream": stream}
                for label, g, port in gateways:
                    eport, admin = free_port(), free_port()
                    cfg = os.path.join(d, f"envoy-{size}-{stream}-{label[0]}.yaml")
                    with open(cfg, "w") as f:
                        f.write(subprocess.run([binary("switchboard"), "envoy-config", "--listen", f"127.0.0.1:{eport}",
                                                "--admin", f"127.0.0.1:{admin}", "--processor", f"127.0.0.1:{port}",
                                                "--buffer-limit", str(max(8 << 20, 4 * size))],
                                               capture_output=True, text=True, check=True).stdout)
                    e = spawn(f"envoy-{size}-{stream}-{label[0]}", [envoy_binary(), "-c", cfg, "--concurrency", "1",
                                                                    "-l", "error", "--base-id", str(free_port())])
                    wait_port(eport)
                    wrk(eport, 1, 4, lua)
                    c0 = cpu_seconds(g.pid)
                    r = wrk(eport, a.seconds, 4, lua)
                    row[label] = (cpu_seconds(g.pid) - c0) * 1e6 / max(1, r["requests"])
                    row[label + " non2xx"] = r["non2xx"]
                    row[label + " rps"] = r["rps"]
                    e.stop()
                rows.append(row)
        print(f"\nprocessor CPU per request through Envoy (wrk -t1 -c4, {a.seconds}s per cell, response phase on "
              f"in this build{'; baseline reads no responses' if a.baseline else ''})\n")
        head = f"{'body':>10}{'stream':>8}{'this build µs':>15}{'req/s':>8}"
        if a.baseline:
            head += f"{'baseline µs':>13}{'ratio':>8}"
        print(head)
        for row in rows:
            line = f"{row['size']:>10}{str(row['stream']):>8}{row['this build']:>15.1f}{row['this build rps']:>8.0f}"
            if a.baseline:
                line += f"{row['baseline']:>13.1f}{row['this build'] / row['baseline']:>8.2f}"
            bad = row["this build non2xx"] + (row.get("baseline non2xx") or 0)
            if bad:
                line += f"   ({bad} non-2xx)"
            print(line)
        print(f"logs: {d}")
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
