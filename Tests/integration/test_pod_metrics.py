"""Discovery from the pods file, scraping, staleness and in-flight
accounting, through the real stack (simulated pods, the gateway, Envoy)."""
import concurrent.futures
import json
import random
import signal
import socket
import threading
import time

from harness import Stack, chat, free_port, metric_sums, poll, run_all, wait_until


def wait_for(fn, timeout=10.0, step=None, what=None):
    """fn()'s first truthy value, or its last value after `timeout` seconds
    (the caller asserts on it with its own message); with `what`, the
    timeout fails here, naming it. `step` overrides the polling pace."""
    if what is not None:
        return wait_until(fn, what, timeout=timeout)
    return poll(fn, timeout=timeout, step=step)


def pod_histogram_mean(address, family):
    """sum / count of a histogram as the pod itself reports it on /metrics."""
    m = metric_sums(address)
    count = m.get(family + "_count", 0.0)
    return m.get(family + "_sum", 0.0) / count if count else None


def pods(s, model="tiny"):
    return {e["address"]: e for e in s.admin("/debug/pods")[1]["models"].get(model, [])}


def test_scraped_values_follow_the_pods_and_go_stale_when_killed():
    with Stack(pods=2, ttft_ms=1500, max_tokens=2,
               switchboard_args=["--stale-after-failures", "2", "--scrape-timeout-ms", "200"]) as s:
        assert wait_for(lambda: all(p["health"] == "fresh" for p in pods(s).values()))
        # Six slow requests in flight: the pods' own gauges show them (running),
        # and so does the gateway's in-flight count.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=6)
        slow = [pool.submit(s.request, chat()) for _ in range(6)]
        seen = wait_for(lambda: sum(p["metrics"]["tiny"]["running"] for p in pods(s).values()
                                    if p["metrics"].get("tiny")) == 6 and pods(s))
        assert seen, pods(s)
        assert sum(p["in_flight_requests"] for p in seen.values()) == 6
        assert [f.result(timeout=60)[0] for f in slow] == [200] * 6
        pool.shutdown()
        assert wait_for(lambda: all(p["in_flight_requests"] == 0 for p in pods(s).values()))
        # TTFT comes from histogram deltas over the window, which began before
        # any request: it equals the mean each pod reports for itself.
        def agreeing():
            seen = {a: p["metrics"].get("tiny", {}).get("ttft_mean_s") for a, p in pods(s).items()}
            own = {a: pod_histogram_mean(a, "vllm:time_to_first_token_seconds") for a in seen}
            served = [a for a in own if own[a] is not None]
            ok = served and all(seen[a] is not None and abs(seen[a] - own[a]) < 1e-9 * max(1, own[a]) for a in served)
            return (seen, own) if ok else None
        wait_for(agreeing, what="the gateway's windowed TTFT mean to equal each pod's own histogram mean")
        # Kill the pods' process: stale after the configured 2 failed scrapes.
        s.sim.signal(signal.SIGKILL)
        stale = wait_for(lambda: all(p["health"] == "stale" for p in pods(s).values()) and pods(s), timeout=10)
        assert stale, pods(s)
        assert all("scrapes failed in a row" in p["stale_reason"] for p in stale.values())
        assert all(p["metrics"] == {} for p in stale.values())  # routers see "unknown", not old numbers
        # The transition happened on the configured rule (2 failures), not later.
        assert s.switchboard.output().count("reason=2 scrapes failed in a row") == 2
        # Stale pods stay routable for strategies that need no metrics (random):
        # the request reaches the dead pod and Envoy reports the connect failure.
        assert s.request(chat())[0] == 503


def test_pods_file_reload_and_rejected_edit():
    # In-band: the trap pod's vLLM-shaped 404 below is rewritten into OpenAI's shape.
    with Stack(pods=2, response_phase="in-band") as s:
        first, second = s.pod_ports
        assert wait_for(lambda: len(pods(s)) == 2)
        # Add a model served by the trap pod, and drop one endpoint of tiny.
        with open(s.pods_file, "w") as f:
            f.write(f"models:\n  - name: tiny\n    endpoints: [127.0.0.1:{first}]\n"
                    f"  - name: extra\n    endpoints: [127.0.0.1:{s.trap_port}]\n")
        assert wait_for(lambda: set(pods(s)) == {f"127.0.0.1:{first}"} and pods(s, "extra"), timeout=5)
        # The trap pod serves only "tiny", so it answers "extra" with its own
        # vLLM-shaped 404: the request did reach it, and the error reaches the
        # client in OpenAI's shape with the pod's message and status.
        st, h, body = s.request(chat(model="extra"))
        assert h["x-switchboard-pod"] == f"127.0.0.1:{s.trap_port}"
        err = json.loads(body)["error"]
        assert st == 404 and "does not exist" in err["message"] and err["code"] == "upstream_error", body
        for _ in range(20):
            assert s.request(chat())[1]["x-switchboard-pod"] == f"127.0.0.1:{first}"
        # A broken edit is rejected and the last good set stays.
        with open(s.pods_file, "w") as f:
            f.write("models:\n  - name: tiny\n    endpoints: [not-an-endpoint]\n")
        assert wait_for(lambda: "pods.file.rejected" in s.switchboard.output(), timeout=5)
        assert "not host:port" in s.switchboard.output()
        assert s.request(chat(model="extra"))[1]["x-switchboard-pod"] == f"127.0.0.1:{s.trap_port}"
        assert s.admin("/v1/models")[1]["data"] == [{"id": "extra", "object": "model", "created": 0, "owned_by": "switchboard"},
                                                    {"id": "tiny", "object": "model", "created": 0, "owned_by": "switchboard"}]


def cancel_mid_stream(port):
    """Starts a streamed request and drops the connection after the first event."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps(chat(stream=True, max_tokens=50)).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.recv(1024)
    sock.close()


def cancel_before_response(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps(chat(max_tokens=3)).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(0.02)  # pacing: close shortly after sending, racing the routing decision on purpose
    sock.close()


def test_in_flight_accounting_returns_to_zero_after_mixed_endings():
    dead = free_port()  # nothing listens there: Envoy fails the upstream connection
    with Stack(pods=3, ttft_ms=30, itl_ms=5, max_tokens=4, extra_models={"dead": [dead]}) as s:
        rnd = random.Random(5)
        kinds = ["ok", "stream", "cancel_stream", "cancel_early", "unknown_model", "bad_json", "dead_pod"]
        plan = [rnd.choice(kinds) for _ in range(2000)]
        counts = {k: 0 for k in kinds}
        lock = threading.Lock()

        def run(items):
            for k in items:
                if k == "ok":
                    r = s.request(chat(max_tokens=3))[0] == 200
                elif k == "stream":
                    r = s.request(chat(stream=True, max_tokens=3))[0] == 200
                elif k == "cancel_stream":
                    cancel_mid_stream(s.envoy_port)
                    r = True
                elif k == "cancel_early":
                    cancel_before_response(s.envoy_port)
                    r = True
                elif k == "unknown_model":
                    r = s.request(chat(model="nope"))[0] == 404
                elif k == "bad_json":
                    r = s.request(b"{")[0] == 400
                else:
                    r = s.request(chat(model="dead"))[0] == 503
                assert r, k
                with lock:
                    counts[k] += 1

        run_all(run, [plan[i::8] for i in range(8)])  # a worker's failed assertion names its plan
        assert sum(counts.values()) == 2000 and all(counts.values()), counts

        def settled():
            all_pods = list(pods(s).values()) + list(pods(s, "dead").values())
            return all_pods if all(p["in_flight_requests"] == 0 and p["in_flight_tokens"] == 0 for p in all_pods) else None
        final = wait_for(settled, timeout=15)
        assert final, (pods(s), pods(s, "dead"))
        routed = sum(p["routed_total"] for p in final)
        expected = counts["ok"] + counts["stream"] + counts["cancel_stream"] + counts["dead_pod"]
        # Early cancels may be routed or not, depending on whether the body arrived first.
        assert expected <= routed <= expected + counts["cancel_early"], (routed, counts)
        stats = s.admin("/debug/stats")[1]["requests"]
        assert stats["routed"] == routed
        print(f"\n{counts}; routed {routed}; gateway outcomes {stats}")


def prometheus(text):
    """{(name, frozenset(labels)): value} from a text page (no escapes needed here)."""
    import re
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def test_gateway_prometheus_metrics():
    with Stack(pods=2) as s:
        for _ in range(30):
            assert s.request(chat())[0] == 200
        for _ in range(5):
            assert s.request(chat(model="nope"))[0] == 404
        assert wait_for(lambda: all(p["health"] == "fresh" for p in pods(s).values()))
        status, text = s.admin("/metrics")
        assert status == 200
        m = prometheus(text)
        assert m[("switchboard_gateway_routed_total", frozenset())] == 30
        assert m[("switchboard_gateway_requests_total", frozenset({("outcome", "rejected")}))] == 5
        assert m[("switchboard_gateway_requests_total", frozenset({("outcome", "completed")}))] == 30
        assert m[("switchboard_gateway_routing_duration_seconds_count", frozenset())] == 30
        assert m[("switchboard_gateway_routing_duration_seconds_bucket", frozenset({("le", "+Inf")}))] == 30
        routed = [v for (n, l), v in m.items() if n == "switchboard_pod_routed_total"]
        assert sorted(routed) != [] and sum(routed) == 30
        ups = [v for (n, l), v in m.items() if n == "switchboard_pod_up"]
        assert ups == [1.0, 1.0]
        assert all(v == 0 for (n, l), v in m.items() if n == "switchboard_pod_in_flight_requests")
        assert m[("switchboard_grpc_serving", frozenset())] == 1
        assert m[("switchboard_scrape_total", frozenset({("result", "succeeded")}))] > 0
