"""Usage from responses, through the real Envoy and the gateway: after a
mixed run, each pod's token counters in the gateway equal the pod's own
(vllm:prompt_tokens_total, vllm:generation_tokens_total); streams without a
usage chunk are counted from their content events and say so; every byte
the client receives is what the pod sent."""
import http.client
import json
import random

import pytest

from harness import Stack, chat, metric_sums, wait_until


def pod_counters(address):
    m = metric_sums(address)
    return {k: m[k] for k in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total") if k in m}


def gateway_pods(s):
    return {e["address"]: e for e in s.admin("/debug/pods")[1]["models"]["tiny"]}


def request(s, kind, i):
    if kind.startswith("chat"):
        body = chat(content=f"tell me about request {i} " + "word " * (i % 7), max_tokens=3 + i % 5)
        path = "/v1/chat/completions"
    else:
        body = {"model": "tiny", "prompt": f"complete number {i} " + "more " * (i % 5), "max_tokens": 2 + i % 4}
        path = "/v1/completions"
    if kind.endswith("stream+usage"):
        body.update(stream=True, stream_options={"include_usage": True})
    elif kind.endswith("stream"):
        body["stream"] = True
    status, headers, payload = s.request(body, path=path)
    assert status == 200, (kind, status, payload[:200])
    if "stream" in kind:
        assert payload.rstrip().endswith(b"data: [DONE]"), payload[-200:]
    else:
        assert "usage" in json.loads(payload)
    return headers["x-switchboard-pod"]


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_pod_token_counters_equal_the_pods_own_usage(phase):
    with Stack(pods=2, max_tokens=4, response_phase=phase) as s:
        rnd = random.Random(3)
        kinds = ["chat", "completions", "chat stream+usage", "completions stream+usage"]
        plan = [rnd.choice(kinds) for _ in range(60)]
        for i, k in enumerate(plan):
            request(s, k, i)

        def agree():
            gw = gateway_pods(s)
            own = {a: pod_counters(a) for a in gw}
            ok = all(gw[a]["prompt_tokens_total"] == own[a].get("vllm:prompt_tokens_total")
                     and gw[a]["completion_tokens_total"] == own[a].get("vllm:generation_tokens_total") for a in gw)
            return (gw, own) if ok else None
        gw, own = wait_until(agree, "each pod's token counters in the gateway to equal the pod's own", timeout=20)
        assert sum(e["prompt_tokens_total"] for e in gw.values()) > 0
        usage = s.admin("/debug/stats")[1]["usage"]
        assert usage == {"reported": 60, "estimated": 0, "missing": 0}, usage

        # Streams without a usage chunk: completion tokens counted from the
        # content events (one per token here), flagged as estimated.
        before = {a: e["completion_tokens_total"] for a, e in gateway_pods(s).items()}
        own_before = {a: pod_counters(a)["vllm:generation_tokens_total"] for a in before}
        for i in range(20):
            request(s, rnd.choice(["chat stream", "completions stream"]), 100 + i)

        def counted():
            gw = gateway_pods(s)
            grew = {a: gw[a]["completion_tokens_total"] - before[a] for a in gw}
            own_grew = {a: pod_counters(a)["vllm:generation_tokens_total"] - own_before[a] for a in gw}
            return grew if grew == own_grew and sum(grew.values()) > 0 else None
        wait_until(counted, "streamed completions without usage to be counted from content events")
        usage = s.admin("/debug/stats")[1]["usage"]
        assert usage == {"reported": 60, "estimated": 20, "missing": 0}, usage
        # In-flight accounting returns to zero once the real tokens replaced the estimates.
        wait_until(lambda: all(e["in_flight_requests"] == 0 and e["in_flight_tokens"] == 0
                               for e in gateway_pods(s).values()), "in-flight counts back to zero")
        page = s.admin("/metrics")[1]
        assert 'switchboard_gateway_usage_total{source="reported"} 60.0' in page
        assert "switchboard_gateway_time_to_first_token_seconds_count" in page


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_usage_accounting_can_be_turned_off(phase):
    with Stack(pods=1, switchboard_args=["--no-usage-accounting"], response_phase=phase) as s:
        request(s, "chat", 1)
        request(s, "chat stream+usage", 2)
        e = next(iter(gateway_pods(s).values()))
        assert e["prompt_tokens_total"] == 0 and e["completion_tokens_total"] == 0
        assert s.admin("/debug/stats")[1]["usage"] == {"reported": 0, "estimated": 0, "missing": 0}


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_every_response_carries_the_request_id(phase):
    import re
    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    with Stack(pods=1, response_phase=phase) as s:
        seen = set()
        for body, path, want in [(chat(), "/v1/chat/completions", 200), (chat(model="nope"), "/v1/chat/completions", 404),
                                 (b"{", "/v1/chat/completions", 400), (chat(stream=True), "/v1/chat/completions", 200)]:
            status, headers, _ = s.request(body, path=path)
            assert status == want
            rid = headers.get("x-request-id", "")
            assert uuid.match(rid), (status, headers)
            seen.add(rid)
        assert len(seen) == 4  # one per request
        status, headers, _ = s.request(chat(), headers={"x-request-id": "client-chosen-42"})
        assert status == 200 and headers["x-request-id"] == "client-chosen-42"
        status, headers, _ = s.request(chat(model="nope"), headers={"x-request-id": "client-chosen-43"})
        assert status == 404 and headers["x-request-id"] == "client-chosen-43"


def test_inject_stream_usage_counts_exactly_and_the_client_sees_no_extra_chunk():
    import re
    volatile = re.compile(rb'"(id|created)":("[^"]*"|\d+)')
    # Rewriting the stream needs the routing stream to answer the response phases.
    with Stack(pods=1, max_tokens=4, switchboard_args=["--inject-stream-usage"], response_phase="in-band") as s:
        pod = f"127.0.0.1:{s.pod_ports[0]}"
        for i in range(6):
            body = chat(content=f"no usage asked {i}", stream=True, max_tokens=3 + i % 3)
            status, _, via = s.request(body)
            assert status == 200 and b'"usage":{' not in via and via.endswith(b"data: [DONE]\n\n"), via[-300:]
            c = http.client.HTTPConnection(*pod.rsplit(":", 1), timeout=30)
            c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"content-type": "application/json"})
            direct = c.getresponse().read()
            c.close()
            assert volatile.sub(b"X", via) == volatile.sub(b"X", direct)
        # A client that asked for usage still gets its chunk.
        status, _, via = s.request(chat(stream=True, stream_options={"include_usage": True}))
        assert b'"choices":[],"usage":{' in via
        usage = s.admin("/debug/stats")[1]["usage"]
        assert usage == {"reported": 7, "estimated": 0, "missing": 0}, usage
        p7 = json.loads(re.search(rb'"usage":(\{[^}]*\})', via).group(1))["prompt_tokens"]
        # Exact prompt tokens: the six streams went to the pod twice (through the
        # gateway and directly), the seventh once: 2 x gateway - pod = p7.
        def exact():
            gw = gateway_pods(s)[pod]["prompt_tokens_total"]
            return 2 * gw - pod_counters(pod)["vllm:prompt_tokens_total"] == p7
        wait_until(exact, "the gateway's prompt tokens to be exact for the injected streams")
