"""The reduced Envoy path (`envoy-config --response-phase observer`, the
default): the routing stream ends its work at the routing decision (two
ext_proc messages per request), Envoy names the pod, strategy and request
id in the response, and a second ext_proc filter in observability mode
reads usage without holding a byte. Through the real Envoy: every request
routed, spoofed headers ignored, the pod's bytes unchanged even while the
gateway is frozen, in-flight counts held for the whole response and
released exactly once, aborted streams included."""
import http.client
import json
import os
import signal

from harness import Stack, chat, open_stream, run_all, wait_until
from test_usage import gateway_pods


def ext_proc_stats(s):
    st = s.stats()
    return {k: v for k, v in st.items() if ".ext_proc." in k}


def test_two_messages_per_request_and_the_observer_only_on_responses():
    with Stack(pods=2, max_tokens=3, response_phase="observer") as s:
        n = 40
        for i in range(n):
            status, h, p = s.request(chat(content=f"r{i}", stream=bool(i % 2)))
            assert status == 200, p[:200]
            assert h["x-switchboard-pod"] == h["x-vllm-sim-pod"]
            assert h["x-switchboard-strategy"] == "random"
            assert "x-switchboard-ticket" not in h
        st = wait_until(lambda: (lambda e: e if e.get("http.openai.ext_proc.routing.streams_closed", 0) == n
                                 else None)(ext_proc_stats(s)), "every routing stream to close")
        # The routing stream: request headers + body, nothing after the decision.
        assert st["http.openai.ext_proc.routing.streams_started"] == n
        assert st["http.openai.ext_proc.routing.stream_msgs_sent"] == 2 * n, st
        # The observer saw every response and Envoy never waited on it.
        assert st["http.openai.ext_proc.usage_observer.streams_started"] == n, st
        assert st.get("http.openai.ext_proc.usage_observer.stream_msgs_received", 0) == 0, st
        wait_until(lambda: s.admin("/debug/stats")[1]["usage"]["reported"] == n // 2
                   and s.admin("/debug/stats")[1]["usage"]["estimated"] == n // 2,
                   "every response's usage recorded (non-streamed reported, streamed counted)")
        page = wait_until(lambda: (lambda p: p if "switchboard_gateway_observed_requests_open 0" in p else None)(
            s.admin("/metrics")[1]), "no request left registered for the observer")
        assert f'switchboard_gateway_observed_responses_total{{matched="true"}} {float(n)}' in page, page


def test_by_default_two_messages_per_request_and_envoy_skips_the_observer():
    # `serve` without --usage-accounting: nothing needs the response.
    with Stack(pods=2, max_tokens=3, response_phase="observer", usage_accounting=None) as s:
        for i in range(10):
            status, h, _ = s.request(chat(content=f"n{i}", stream=bool(i % 2)))
            assert status == 200 and h["x-switchboard-pod"] == h["x-vllm-sim-pod"]
        st = wait_until(lambda: (lambda e: e if e.get("http.openai.ext_proc.routing.streams_closed", 0) == 10
                                 else None)(ext_proc_stats(s)), "every routing stream to close")
        assert st["http.openai.ext_proc.routing.stream_msgs_sent"] == 20, st
        assert st.get("http.openai.ext_proc.usage_observer.streams_started", 0) == 0, st
        assert s.admin("/debug/stats")[1]["usage"] == {"reported": 0, "estimated": 0, "missing": 0}
        wait_until(lambda: all(e["in_flight_requests"] == 0 for e in gateway_pods(s).values()), "in-flight back to 0")


def test_spoofed_routing_headers_change_nothing():
    with Stack(pods=2, max_tokens=2, response_phase="observer") as s:
        trap = f"127.0.0.1:{s.trap_port}"
        spoof = {"target-pod": trap, "x-switchboard-ticket": "1", "x-switchboard-strategy": "evil",
                 "x-switchboard-pod": trap}
        pods = set()
        for i in range(30):
            status, h, _ = s.request(chat(content=f"s{i}"), headers=spoof)
            assert status == 200
            assert h["x-switchboard-pod"] == h["x-vllm-sim-pod"] != trap
            assert h["x-switchboard-strategy"] == "random"
            pods.add(h["x-switchboard-pod"])
        assert pods == {f"127.0.0.1:{p}" for p in s.pod_ports}
        # A rejected request echoes no strategy the client made up.
        status, h, _ = s.request(chat(), headers={"routing-strategy": "nope", "x-switchboard-strategy": "evil"})
        assert status == 400 and "x-switchboard-strategy" not in h
        wait_until(lambda: all(e["in_flight_requests"] == 0 for e in gateway_pods(s).values()), "in-flight back to 0")
        assert s.admin("/debug/stats")[1]["usage"]["reported"] == 30


def test_envoy_errors_reach_clients_as_openai_errors():
    from harness import free_port
    dead = free_port()
    with Stack(pods=1, extra_models={"dead": [dead]}, response_phase="observer") as s:
        # The pod is unreachable: Envoy's own 503, in OpenAI's shape, naming the pod.
        status, h, p = s.request(chat(model="dead"))
        assert status == 503, p
        assert h["content-type"] == "application/json"
        assert h["x-switchboard-pod"] == f"127.0.0.1:{dead}"
        err = json.loads(p)["error"]
        assert err["code"] == "upstream_error" and err["type"] == "overloaded_error"  # retryable, like the gateway's 503s
        assert f"127.0.0.1:{dead}" in err["message"] and h["x-request-id"] in err["message"]
        # Over Envoy's buffer limit: its own 413, in OpenAI's shape.
        big = json.dumps(chat(content="x" * (9 << 20))).encode()
        status, h, p = s.request(big)
        assert status == 413
        err = json.loads(p)["error"]
        assert err["code"] == "request_too_large" and err["type"] == "invalid_request_error"
        # The gateway's own answers pass unchanged (no response flag).
        status, h, p = s.request(chat(model="nope"))
        assert status == 404 and json.loads(p)["error"]["code"] == "model_not_found"


def test_in_flight_held_for_the_whole_stream_and_released_once_even_when_clients_abort():
    # 20 ms between tokens: a 4-token stream ends by itself, a 5,000-token
    # one outlives the test (its client walks away).
    with Stack(pods=2, itl_ms=20, response_phase="observer") as s:
        in_flight = lambda: sum(e["in_flight_requests"] for e in gateway_pods(s).values())  # noqa: E731
        # Streams read to their end.
        for i in range(4):
            c, data, _ = open_stream(s, f"a{i}", max_tokens=4)
            while not data.endswith(b"0\r\n\r\n"):
                chunk = c.recv(65536)
                assert chunk, data[-200:]
                data += chunk
            assert b"data: [DONE]" in data
            c.close()
        wait_until(lambda: in_flight() == 0, "the finished streams released")
        # Streams still running: each counted once while it runs…
        held = run_all(lambda i: open_stream(s, f"a{10 + i}", max_tokens=5000)[0], list(range(4)))
        wait_until(lambda: in_flight() == 4, "4 requests in flight while their streams run")
        for c in held:
            c.close()  # …and released once when its client walks away mid-stream
        # Released exactly once: zero, not below (a double release would go negative).
        pods = wait_until(lambda: (lambda g: g if all(e["in_flight_requests"] == 0 and e["in_flight_tokens"] == 0
                                                      for e in g.values()) else None)(gateway_pods(s)),
                          "in-flight counts back to zero")
        assert all(e["in_flight_requests"] == 0 for e in pods.values()), pods
        st = s.admin("/debug/stats")[1]["requests"]
        assert st["routed"] == 8, st
        wait_until(lambda: (lambda r: r if r["completed"] + r["reset"] + r["aborted"] == 8 else None)(
            s.admin("/debug/stats")[1]["requests"]), "every routing stream ended once")


def test_streamed_bytes_never_wait_on_the_gateway_after_routing():
    # Freeze the gateway once the stream has started: the pod's remaining
    # events still reach the client (nothing after routing waits on it).
    with Stack(pods=1, max_tokens=30, itl_ms=20, response_phase="observer") as s:
        c = http.client.HTTPConnection("127.0.0.1", s.envoy_port, timeout=30)
        c.request("POST", "/v1/chat/completions", body=json.dumps(chat(stream=True, max_tokens=30)),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        first = r.read1(65536)
        assert first.startswith(b"data: ")
        os.kill(s.switchboard.p.pid, signal.SIGSTOP)
        try:
            rest = r.read()
        finally:
            os.kill(s.switchboard.p.pid, signal.SIGCONT)
        c.close()
        events = [e for e in (first + rest).split(b"\n\n") if e.strip()]
        assert events[-1] == b"data: [DONE]"
        text = "".join(json.loads(e[len(b"data: "):])["choices"][0]["delta"].get("content", "")
                       for e in events[:-1] if json.loads(e[len(b"data: "):])["choices"])
        assert len(text.split()) == 30, text
        wait_until(lambda: all(e["in_flight_requests"] == 0 for e in gateway_pods(s).values()),
                   "the request released once the gateway runs again")


def test_upstream_errors_pass_as_the_pod_sent_them_naming_the_pod():
    # The reduced path does not rewrite upstream bodies (in-band does): the
    # engine's own error, status and message reach the client unchanged.
    with Stack(pods=1, response_phase="observer", switchboard_args=["--pass-through-unknown-paths"]) as s:
        pod = f"127.0.0.1:{s.pod_ports[0]}"
        status, h, p = s.request(chat(max_tokens=10**6))
        assert status == 400 and h["x-switchboard-pod"] == pod
        direct = http.client.HTTPConnection("127.0.0.1", s.pod_ports[0], timeout=10)
        direct.request("POST", "/v1/chat/completions", body=json.dumps(chat(max_tokens=10**6)),
                       headers={"content-type": "application/json"})
        assert p == direct.getresponse().read()
        status, h, p = s.request({"model": "tiny", "prompt": "x"}, path="/v1/tokenize")
        assert status == 404 and h["x-switchboard-pod"] == pod and json.loads(p) == {"detail": "Not Found"}
        assert s.admin("/debug/stats")[1]["usage"] == {"reported": 0, "estimated": 0, "missing": 0}
