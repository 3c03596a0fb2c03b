"""A table of malformed requests through the real Envoy: each gets its
documented status and an OpenAI error object (JSON, with code and type);
the gateway never crashes, hangs or leaks an in-flight count."""
import http.client
import json

import pytest

from harness import Stack, wait_until

DEEP = b'{"model":"tiny","messages":[' + b"[" * 200 + b"]" * 200 + b"]}"
CASES = [
    # (name, body, headers, status, code)
    ("empty body", b"", {}, 400, "invalid_json"),
    ("truncated JSON", b'{"model":"tiny","messages":[{"role":"user","content":"hi"}', {}, 400, "invalid_json"),
    ("not an object", b'["model","tiny"]', {}, 400, "invalid_json"),
    ("missing model", b'{"messages":[]}', {}, 400, "missing_model"),
    ("model a number", b'{"model":7,"messages":[]}', {}, 400, "invalid_type"),
    ("stream a string", b'{"model":"tiny","messages":[],"stream":"yes"}', {}, 400, "invalid_type"),
    ("messages a string", b'{"model":"tiny","messages":"hi"}', {}, 400, "invalid_type"),
    ("message a number", b'{"model":"tiny","messages":[1]}', {}, 400, "invalid_type"),
    ("content an object", b'{"model":"tiny","messages":[{"role":"user","content":{}}]}', {}, 400, "invalid_type"),
    ("max_tokens negative", b'{"model":"tiny","messages":[],"max_tokens":-5}', {}, 400, "invalid_type"),
    ("max_tokens a float", b'{"model":"tiny","messages":[],"max_tokens":2.5}', {}, 400, "invalid_type"),
    ("stream_options a list", b'{"model":"tiny","messages":[],"stream_options":[]}', {}, 400, "invalid_type"),
    ("user a number", b'{"model":"tiny","messages":[],"user":1}', {}, 400, "invalid_type"),
    ("duplicate model", b'{"model":"tiny","messages":[],"model":"other"}', {}, 400, "invalid_json"),
    ("invalid UTF-8", b'{"model":"tiny","messages":[{"role":"user","content":"\xff\xfe"}]}', {}, 400, "invalid_json"),
    ("deep nesting", DEEP, {}, 400, "invalid_json"),
    ("unknown model", b'{"model":"nope","messages":[]}', {}, 404, "model_not_found"),
    ("wrong content-type", b'{"model":"tiny","messages":[]}', {"content-type": "text/plain"}, 415, "unsupported_media_type"),
    ("form content-type", b'model=tiny', {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ("10 MB body", b'{"model":"tiny","messages":[{"role":"user","content":"' + b"x" * (10 << 20) + b'"}]}', {}, 413,
     "request_too_large"),
]


@pytest.fixture(scope="module")
def stack():
    with Stack(pods=2) as s:
        yield s


def post(s, body, headers):
    c = http.client.HTTPConnection("127.0.0.1", s.envoy_port, timeout=60)
    h = {"content-type": "application/json"}
    h.update(headers)
    try:
        c.request("POST", "/v1/chat/completions", body=body, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


@pytest.mark.parametrize("name,body,headers,status,code", CASES, ids=[c[0] for c in CASES])
def test_each_malformed_request_gets_its_status_and_an_openai_error(stack, name, body, headers, status, code):
    got, h, payload = post(stack, body, headers)
    assert got == status, (name, got, payload[:300])
    assert h.get("content-type") == "application/json", (name, h)
    err = json.loads(payload)["error"]
    assert err["code"] == code and err["type"] and err["message"], (name, err)
    assert h.get("x-request-id")


def test_nothing_leaked_and_the_gateway_still_serves(stack):
    # After the whole table: no in-flight count left behind, no crash.
    wait_until(lambda: all(e["in_flight_requests"] == 0 and e["in_flight_tokens"] == 0
                           for e in stack.admin("/debug/pods")[1]["models"]["tiny"]), "in-flight counts at zero")
    assert stack.switchboard.alive()
    got, _, payload = post(stack, b'{"model":"tiny","messages":[{"role":"user","content":"still here?"}]}', {})
    assert got == 200 and json.loads(payload)["object"] == "chat.completion"
