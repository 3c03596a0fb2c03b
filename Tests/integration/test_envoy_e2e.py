"""Envoy -> switchboard (ext_proc over h2c) -> simulated vLLM pods, end to end."""
import collections
import http.client
import json
import threading

import pytest

from harness import Stack, chat, run_all


def load(stack, total, workers=16, body=None, headers=None):
    """Sends `total` requests over keep-alive connections; returns (statuses, pods)."""
    statuses = collections.Counter()
    pods = collections.Counter()
    lock = threading.Lock()
    payload = json.dumps(body or chat(max_tokens=4)).encode()
    per = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]

    def worker(n):
        conn = http.client.HTTPConnection("127.0.0.1", stack.envoy_port, timeout=30)
        local_s, local_p = collections.Counter(), collections.Counter()
        for _ in range(n):
            h = {"content-type": "application/json"}
            h.update(headers or {})
            try:
                conn.request("POST", "/v1/chat/completions", body=payload, headers=h)
                r = conn.getresponse()
                data = r.read()
                local_s[r.status] += 1
                if r.status == 200:
                    pod = r.getheader("x-vllm-sim-pod")
                    assert r.getheader("x-switchboard-pod") == pod
                    assert json.loads(data)["object"] == "chat.completion"
                    local_p[pod] += 1
            except (OSError, http.client.HTTPException) as e:
                local_s[f"error:{type(e).__name__}"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", stack.envoy_port, timeout=30)
        conn.close()
        with lock:
            statuses.update(local_s)
            pods.update(local_p)

    run_all(worker, per)  # a failed assertion in a worker fails the test, naming it
    return statuses, pods


@pytest.mark.parametrize("processor", ["tcp", "unix"])
def test_thousands_of_requests_no_failures_no_rst_storm(processor):
    total = 2400 if processor == "tcp" else 600
    with Stack(pods=3, processor=processor) as s:
        statuses, pods = load(s, total)
        assert statuses == {200: total}, statuses
        expected = {f"127.0.0.1:{p}" for p in s.pod_ports}
        assert set(pods) == expected, pods
        assert all(pods[p] > total / 10 for p in expected), pods  # each pod gets real traffic
        st = s.stats()
        assert st["cluster.switchboard.upstream_cx_protocol_error"] == 0
        assert st.get("http.openai.downstream_rq_5xx", 0) == 0
        # One ext_proc connection carried everything: no GOAWAY-and-reconnect churn.
        assert st["cluster.switchboard.upstream_cx_total"] <= 2, st["cluster.switchboard.upstream_cx_total"]
        print(f"\n{processor}: {total} requests, spread {dict(pods)}, "
              f"processor connections {st['cluster.switchboard.upstream_cx_total']}")


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_client_target_pod_never_decides_upstream(phase):
    with Stack(pods=2, response_phase=phase) as s:
        trap = f"127.0.0.1:{s.trap_port}"
        statuses, pods = load(s, 200, workers=4, headers={"target-pod": trap})
        assert statuses == {200: 200}
        assert trap not in pods
        assert set(pods) <= {f"127.0.0.1:{p}" for p in s.pod_ports}
        # The trap pod saw nothing at all.
        c = http.client.HTTPConnection("127.0.0.1", s.trap_port, timeout=5)
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny"} 0.0' in metrics


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_streamed_response_passes_through_intact(phase):
    with Stack(pods=2, max_tokens=5, itl_ms=2, response_phase=phase) as s:
        body = chat(stream=True, max_tokens=5, stream_options={"include_usage": True})
        status, headers, payload = s.request(body)
        assert status == 200
        assert headers["content-type"].startswith("text/event-stream")
        pod = headers["x-switchboard-pod"]
        assert headers["x-vllm-sim-pod"] == pod
        # The same request straight to that pod gives the same event stream
        # (apart from ids and timestamps): Envoy + switchboard changed nothing.
        host, port = pod.split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                  headers={"content-type": "application/json"})
        direct = c.getresponse().read()

        def normalize(raw):
            events = [e for e in raw.decode().split("\n\n") if e.strip()]
            out = []
            for e in events:
                assert e.startswith("data: "), e
                data = e[len("data: "):]
                if data == "[DONE]":
                    out.append(data)
                    continue
                j = json.loads(data)
                j.pop("id"), j.pop("created")
                out.append(j)
            return out

        via, straight = normalize(payload), normalize(direct)
        assert via == straight
        assert via[-1] == "[DONE]"
        assert via[-2]["usage"]["completion_tokens"] == 5
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in via[:-2])
        # Five words; the simulator's text is a function of the prompt, so
        # the direct request above got the very same words.
        assert len(text.split()) == 5


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_openai_errors_through_envoy(phase):
    with Stack(pods=1, response_phase=phase) as s:
        status, h, p = s.request(chat(model="no-such-model"))
        assert status == 404
        assert h["content-type"] == "application/json"
        err = json.loads(p)["error"]
        assert err["code"] == "model_not_found" and err["param"] == "model"
        assert err["type"] == "invalid_request_error" and "no-such-model" in err["message"]

        status, h, p = s.request(b'{"model": "tiny", "messages": [')
        assert status == 400
        err = json.loads(p)["error"]
        assert err["code"] == "invalid_json" and err["type"] == "invalid_request_error"

        status, h, p = s.request(chat(), headers={"routing-strategy": "no-such-strategy"})
        assert status == 400
        err = json.loads(p)["error"]
        assert err["code"] == "invalid_routing_strategy" and "random" in err["message"]
        assert h["x-error-invalid-routing-strategy"] == "no-such-strategy"

        status, h, p = s.request({"model": 7, "messages": []})
        assert status == 400 and json.loads(p)["error"]["param"] == "model"

        status, h, p = s.request(chat(stream="yes"))
        assert status == 400 and json.loads(p)["error"]["param"] == "stream"

        status, h, p = s.request(None, path="/v1/chat/completions", method="GET")
        assert status == 405

        status, h, p = s.request(None, path="/v1/models", method="GET")
        assert status == 200
        assert json.loads(p) == {"object": "list", "data": [
            {"id": "tiny", "object": "model", "created": 0, "owned_by": "switchboard"}]}

        # The stack still serves after all that.
        status, h, p = s.request(chat(), headers={"routing-strategy": "random"})
        assert status == 200 and h["x-switchboard-strategy"] == "random"


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_completions_and_dead_pod_errors(phase):
    with Stack(pods=1, extra_models={"ghost": []}, response_phase=phase) as s:
        status, h, p = s.request({"model": "tiny", "prompt": "once upon", "max_tokens": 3}, path="/v1/completions")
        assert status == 200 and json.loads(p)["object"] == "text_completion"
        status, h, p = s.request({"model": "ghost", "prompt": "x"}, path="/v1/completions")
        assert status == 503
        assert json.loads(p)["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("mode", ["full-duplex-streamed"])
def test_full_duplex_body_mode_through_envoy(mode):
    with Stack(pods=2, request_body_mode=mode) as s:
        statuses, pods = load(s, 300, workers=8)
        assert statuses == {200: 300}, statuses
        assert len(pods) == 2
        big = chat(content="x" * (600 * 1024))
        status, h, p = s.request(big)
        assert status == 200, p[:300]
        assert s.stats()["cluster.switchboard.upstream_cx_protocol_error"] == 0
