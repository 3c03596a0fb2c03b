"""Structured logs: `--log-format json` writes one JSON object per line and
`logfmt` one logfmt line, and every request gets one `gateway.request` line
at info with its id, model, strategy, pod, status, duration and tokens."""
import json
import re
import shlex
import subprocess

from harness import Stack, binary, chat, wait_until


def request_lines(s, parse):
    out = []
    for line in s.switchboard.output().splitlines():
        if "gateway.request" in line:
            rec = parse(line)
            if rec.get("msg") == "gateway.request":
                out.append(rec)
    return out


def logfmt(line):
    rec = {}
    for tok in shlex.split(line):
        k, _, v = tok.partition("=")
        rec[k] = v
    return rec


def test_json_request_lines(tmp_path):
    with Stack(pods=2, switchboard_args=["--log-format", "json"], response_phase="in-band") as s:
        status, h, _ = s.request(chat(content="log me", max_tokens=3), headers={"routing-strategy": "least-request",
                                                                                "x-request-id": "req-json-1"})
        assert status == 200
        status, _, _ = s.request(chat(model="nope"), headers={"x-request-id": "req-json-2"})
        assert status == 404
        wait_until(lambda: len(request_lines(s, json.loads)) >= 2, "two gateway.request lines")
        # Every line of the log is a JSON object.
        for line in s.switchboard.output().splitlines():
            if line.strip():
                json.loads(line)
        recs = {r["request.id"]: r for r in request_lines(s, json.loads)}
        ok = recs["req-json-1"]
        assert ok["level"] == "info" and ok["request.model"] == "tiny" and ok["router.name"] == "least-request"
        assert ok["pod.address"] == h["x-switchboard-pod"] and ok["http.status"] == "200" and ok["outcome"] == "completed"
        # The timings are present as plain decimal numbers (their size is the benchmarks' business).
        assert re.fullmatch(r"\d+(\.\d+)?", ok["duration_ms"]) and re.fullmatch(r"\d+(\.\d+)?", ok["routing_us"]), ok
        assert int(ok["tokens.prompt"]) > 0 and ok["tokens.completion"] == "3"
        bad = recs["req-json-2"]
        assert bad["http.status"] == "404" and bad["request.model"] == "unknown" and "pod.address" not in bad


def test_logfmt_request_lines(tmp_path):
    with Stack(pods=2, switchboard_args=["--log-format", "logfmt"]) as s:
        status, _, _ = s.request(chat(content="log me too"), headers={"x-request-id": "req logfmt 1"})
        assert status == 200
        wait_until(lambda: request_lines(s, logfmt), "a gateway.request line")
        rec = next(r for r in request_lines(s, logfmt) if r["request.id"] == "req logfmt 1")  # quoted: it has spaces
        assert rec["level"] == "info" and rec["request.model"] == "tiny" and rec["router.name"] == "random"
        assert rec["ts"].endswith("Z") and "T" in rec["ts"]


def test_an_unknown_log_format_is_refused():
    r = subprocess.run([binary("switchboard"), "serve", "--pods-file", "/dev/null", "--log-format", "xml"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "unknown --log-format 'xml'" in r.stderr, r.stderr
