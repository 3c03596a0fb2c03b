"""Streams through the real Envoy and the gateway, with the pod cutting its
events every way a network can (one byte per write, random cuts, several
events per write): the client receives byte for byte what the pod sends,
and the gateway records the same usage and one TTFT per stream. A pod
dying mid-stream reaches the client as an error, not a clean end."""
import http.client
import json
import re

import pytest

from harness import Stack, chat, wait_until
from test_usage import gateway_pods, pod_counters

VOLATILE = re.compile(rb'"(id|created)":("[^"]*"|\d+)')


def normalise(payload):
    return VOLATILE.sub(rb'"\1":X', payload)


def direct(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"content-type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


@pytest.mark.parametrize("chunking", ["bytes", "random", "merged", "events"])
@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_pathological_chunkings_pass_unchanged_and_are_accounted(chunking, phase):
    with Stack(pods=1, max_tokens=6, sim_args=["--sse-chunking", chunking], response_phase=phase) as s:
        n = 8
        for i in range(n):
            body = chat(content=f"stream {i} " + "x " * i, stream=True, stream_options={"include_usage": True},
                        max_tokens=3 + i % 4)
            status, headers, via_envoy = s.request(body)
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            st, at_pod = direct(s.pod_ports[0], body)
            assert st == 200
            assert normalise(via_envoy) == normalise(at_pod), (via_envoy[:300], at_pod[:300])
            assert via_envoy.endswith(b"data: [DONE]\n\n")

        def agree():
            gw = gateway_pods(s)
            return all(e["completion_tokens_total"] > 0 for e in gw.values()) and \
                s.admin("/debug/stats")[1]["usage"]["reported"] == n
        wait_until(agree, f"the gateway to account {n} streams")
        # Direct requests bypass the gateway: the pod saw 2n, the gateway n; each half is equal.
        own = pod_counters(f"127.0.0.1:{s.pod_ports[0]}")
        gw = next(iter(gateway_pods(s).values()))
        assert 2 * gw["prompt_tokens_total"] == own["vllm:prompt_tokens_total"]
        assert 2 * gw["completion_tokens_total"] == own["vllm:generation_tokens_total"]
        page = s.admin("/metrics")[1]
        assert f"switchboard_gateway_time_to_first_token_seconds_count {float(n)}" in page, page


@pytest.mark.parametrize("phase", ["in-band", "observer"])
def test_a_pod_dying_mid_stream_is_an_error_at_the_client(phase):
    # Tokens trickle (50 ms apart), so the response has started when the pod dies.
    with Stack(pods=1, max_tokens=10, ttft_ms=20, itl_ms=50, sim_args=["--fail-after-tokens", "3"], response_phase=phase) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.envoy_port, timeout=30)
        c.request("POST", "/v1/chat/completions", body=json.dumps(chat(stream=True)),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionError, http.client.HTTPException)):
            r.read()
        c.close()
        # The gateway counted what it saw (3 content events, estimated) and released the pod.
        wait_until(lambda: all(e["in_flight_requests"] == 0 for e in gateway_pods(s).values()),
                   "the in-flight count to return to zero")
        # The observer settles a cut stream when Envoy closes its stream
        # (its deferred close), possibly after the routing stream ended.
        e = wait_until(lambda: (lambda e: e if e["completion_tokens_total"] else None)(next(iter(gateway_pods(s).values()))),
                       "the cut stream's content events to be counted")
        assert e["completion_tokens_total"] == 3, e
        # Non-streamed requests are unaffected by the mid-stream failure mode.
        status, _, payload = s.request(chat(max_tokens=4))
        assert status == 200 and json.loads(payload)["usage"]["completion_tokens"] == 4
