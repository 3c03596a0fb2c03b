"""The benchmark toolkit: deterministic generators, trace replay that keeps
the traces' properties, a client whose measurements match a simulator with
known delays, sessions that resend history, reports, and a smoke run of
scripts/bench-routing through the real Envoy and Switchboard."""
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

import pytest

from harness import ROOT, Proc, binary, free_ports, metric_sums, wait_port

sys.path.insert(0, os.path.join(ROOT, "Benchmarks", "toolkit"))
from sbbench import client as client_mod  # noqa: E402
from sbbench import datasets, report, workloads  # noqa: E402

# The committed slices (Benchmarks/traces): the first 1,000 rows of each public trace.
MOONCAKE = os.path.join(ROOT, "Benchmarks", "traces", "mooncake-fast25-conversation.first1000.jsonl")
AZURE = os.path.join(ROOT, "Benchmarks", "traces", "azure-llm-2023-conv.first1000.csv")


# ---- generators ------------------------------------------------------------

def test_generators_are_deterministic_for_a_seed():
    a = datasets.synthetic_prefix(num_prefixes=3, samples_per_prefix=4, prompt_length=120, seed=5)
    assert a == datasets.synthetic_prefix(num_prefixes=3, samples_per_prefix=4, prompt_length=120, seed=5)
    assert a != datasets.synthetic_prefix(num_prefixes=3, samples_per_prefix=4, prompt_length=120, seed=6)
    m = datasets.multiturn(num_sessions=5, seed=3)
    assert m == datasets.multiturn(num_sessions=5, seed=3) and m != datasets.multiturn(num_sessions=5, seed=4)
    for gen in (lambda r: workloads.poisson_arrivals(r, 5, duration=20),
                lambda r: workloads.sinusoidal_arrivals(r, 5, 3, 10, duration=20),
                lambda r: workloads.step_arrivals(r, [(0, 2), (5, 10)], duration=20)):
        assert gen(random.Random(1)) == gen(random.Random(1))
        assert gen(random.Random(1)) != gen(random.Random(2))
    rows = workloads.from_dataset(a, workloads.constant_arrivals(4, count=len(a)), max_tokens=9)
    assert [r["timestamp_ms"] for r in rows] == [i * 250.0 for i in range(len(a))]
    assert all(r["max_tokens"] == 9 for r in rows)


def test_synthetic_prefix_sharing_has_the_configured_shape():
    rows = datasets.synthetic_prefix(num_prefixes=4, samples_per_prefix=60, seed=1,
                                     **datasets.PREBLE_PRESETS["toolbench"])
    lengths = [len(r["prompt"].split()) for r in rows]
    assert lengths == [r["prompt_tokens"] for r in rows]
    assert 1835 * 0.85 < statistics.mean(lengths) < 1835 * 1.15
    for g in range(4):
        grp = [r for r in rows if r["prefix_group"] == g]
        a, b = grp[0], grp[1]
        n = min(a["shared_tokens"], b["shared_tokens"])
        assert a["prompt"].split()[:n] == b["prompt"].split()[:n]
    other = [r for r in rows if r["prefix_group"] != rows[0]["prefix_group"]][0]
    assert rows[0]["prompt"].split()[:20] != other["prompt"].split()[:20]
    share = statistics.mean(r["shared_tokens"] / r["prompt_tokens"] for r in rows)
    assert 0.75 < share < 0.95


def test_arrival_rates_match_the_pattern():
    rng = random.Random(0)
    assert 900 < len(workloads.poisson_arrivals(rng, 10, duration=100)) < 1100
    steps = workloads.step_arrivals(rng, workloads.parse_steps("0:2,50:20"), duration=100)
    assert len([t for t in steps if t < 50]) * 5 < len([t for t in steps if t >= 50])
    sine = workloads.sinusoidal_arrivals(rng, 10, 8, 100, duration=100)
    assert len([t for t in sine if t < 50]) > 2 * len([t for t in sine if t >= 50])


def test_mooncake_replay_preserves_prefix_sharing():
    rows = workloads.mooncake(MOONCAKE, max_requests=300)
    with open(MOONCAKE) as f:
        raw = [json.loads(next(f)) for _ in range(300)]
    assert [r["prompt_tokens"] for r in rows] == [r["input_length"] for r in raw]
    assert all(len(r["prompt"].split()) == r["prompt_tokens"] for r in rows)
    split = [r["prompt"].split() for r in rows]
    checked = 0
    for i in range(len(rows)):
        for j in range(i + 1, min(len(rows), i + 40)):
            a, b = rows[i], rows[j]
            k = 0
            while k < min(len(a["hash_ids"]), len(b["hash_ids"])) and a["hash_ids"][k] == b["hash_ids"][k]:
                k += 1
            if k == 0:
                continue
            n = min(k * 512, a["prompt_tokens"], b["prompt_tokens"])
            wa, wb = split[i], split[j]
            assert wa[:n] == wb[:n], (i, j, k)
            if k < min(len(a["hash_ids"]), len(b["hash_ids"])) and n == k * 512 and min(len(wa), len(wb)) > n + 8:
                assert wa[n:n + 8] != wb[n:n + 8]   # different next block, different text
            checked += 1
    assert checked > 100


def test_azure_replay_keeps_arrival_times_and_lengths():
    rows = workloads.azure(AZURE, max_requests=50, time_scale=0.5)
    with open(AZURE) as f:
        f.readline()
        raw = [next(f).strip().split(",") for _ in range(50)]
    assert rows[0]["timestamp_ms"] == 0.0
    assert [r["prompt_tokens"] for r in rows] == [int(x[1]) for x in raw]
    assert [r["max_tokens"] for r in rows] == [int(x[2]) for x in raw]
    # 18:15:46.68059 -> 18:15:50.995169 is 4314.579 ms, halved by time_scale.
    assert abs(rows[1]["timestamp_ms"] - 4314.579 / 2) < 0.01


# ---- client against the simulator -----------------------------------------

@pytest.fixture
def sim():
    """Starts vllm-sim pods with the given arguments; yields ports."""
    procs = []
    logdir = tempfile.mkdtemp(prefix="sbbench-")

    def start(*args, pods=1):
        ports = free_ports(pods)
        listen = sum((["--listen", f"127.0.0.1:{p}"] for p in ports), [])
        procs.append(Proc("vllm-sim", [binary("vllm-sim")] + listen + list(args), logdir))
        for p in ports:
            wait_port(p)
        return ports
    yield start
    for p in procs:
        p.stop()


def run_client(port, reqs, **kw):
    opts = dict(api="chat", stream=True)
    opts.update(kw)
    concurrency = opts.pop("concurrency", None)
    c = client_mod.Client(f"http://127.0.0.1:{port}", "tiny", **opts)
    return asyncio.run(client_mod.run(reqs, c, concurrency=concurrency, progress=False))


def sim_metrics(port):
    """{sample name without labels: summed value} from the pod's own /metrics."""
    return metric_sums(f"127.0.0.1:{port}")


# Clock granularity between the client's and the simulator's reads of the
# same monotonic clock; not a timing window.
CLOCK_SLACK_MS = 1.0


def test_client_measures_known_delays(sim):
    # The pod holds the first token 60 ms and each next one 12 ms: causality
    # bounds what the client can see from below, and the client's own numbers
    # must add up. No upper bound on latency is asserted (machines are noisy).
    (port,) = sim("--profile", "fixed", "--ttft-ms", "60", "--itl-ms", "12")
    reqs = [{"timestamp_ms": i * 40.0, "prompt": f"hello number {i}", "max_tokens": 20} for i in range(12)]
    recs = run_client(port, reqs)
    assert len(recs) == 12 and all(r["status"] == 200 for r in recs)
    for r in recs:
        assert r["completion_tokens"] == 20 and len(r["itl_ms"]) == 19, r
        # Token k cannot arrive before 60 + 12k ms after the request was sent.
        arrival = r["ttft_ms"]
        assert arrival >= 60 - CLOCK_SLACK_MS, r["ttft_ms"]
        for k, gap in enumerate(r["itl_ms"], 1):
            arrival += gap
            assert arrival >= 60 + 12 * k - CLOCK_SLACK_MS, (k, r["itl_ms"])
        # Gaps are measured per token and TPOT is their mean, not an estimate.
        assert abs(r["tpot_ms"] - sum(r["itl_ms"]) / 19) < 1e-6, r
        assert r["ttft_ms"] + sum(r["itl_ms"]) <= r["e2e_ms"] + 1e-6
        assert r["dispatch_s"] >= r["scheduled_s"] and r["pod"] == f"127.0.0.1:{port}"
    # The pod's own report: it served these 12 requests, 19 gaps each, and the
    # client saw every first token no sooner than the pod sent it.
    m = sim_metrics(port)
    assert m["vllm:time_to_first_token_seconds_count"] == 12
    assert m["vllm:inter_token_latency_seconds_count"] == 12 * 19
    assert statistics.mean(r["ttft_ms"] for r in recs) >= 1000 * m["vllm:time_to_first_token_seconds_sum"] / 12 - CLOCK_SLACK_MS
    plain = run_client(port, reqs[:3], stream=False, api="completions")
    for r in plain:
        assert r["ttft_ms"] is None and r["itl_ms"] == []
        assert r["e2e_ms"] >= 60 + 19 * 12 - CLOCK_SLACK_MS


def test_open_loop_keeps_timestamps_and_closed_loop_caps_concurrency(sim):
    # Open loop: six requests scheduled at 0 all reach the pod before any
    # finishes, as the pod itself reports (its running gauge reaches 6).
    (port,) = sim("--profile", "fixed", "--ttft-ms", "1000", "--itl-ms", "0")
    reqs = [{"timestamp_ms": 0.0, "prompt": f"p{i}", "max_tokens": 2} for i in range(6)]
    import threading
    peak = {"running": 0.0}
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak["running"] = max(peak["running"], sim_metrics(port).get("vllm:num_requests_running", 0.0))
            done.wait(0.01)  # pacing between looks
    w = threading.Thread(target=watch)
    w.start()
    try:
        recs = run_client(port, reqs)
    finally:
        done.set()
        w.join()
    assert all(r["status"] == 200 for r in recs)
    assert peak["running"] == 6, peak
    # Closed loop with concurrency 2: never more than 2 in flight, by the
    # client's own dispatch and completion events.
    recs = run_client(port, reqs, concurrency=2)
    spans = [(r["dispatch_s"], r["dispatch_s"] + r["e2e_ms"] / 1000) for r in recs]
    for s, _ in spans:
        assert sum(1 for a, b in spans if a <= s < b) <= 2


def test_sessions_resend_history_and_hit_the_prefix_cache(sim):
    (port,) = sim("--kv-blocks", "4096", "--speed", "20")
    data = datasets.multiturn(num_sessions=3, turns_mean=3, turns_std=0.01, prompt_length=40, prompt_length_std=10, seed=2)
    reqs = workloads.from_dataset(data, [0.0, 0.05, 0.1], max_tokens=8)
    recs = run_client(port, reqs)
    assert len(recs) == len(reqs) and all(r["status"] == 200 for r in recs)
    words = {(r["session_id"], r["turn"]): r["prompt_tokens"] for r in reqs}
    for r in recs:
        if r["turn"] > 0:
            prev = next(x for x in recs if x["session_id"] == r["session_id"] and x["turn"] == r["turn"] - 1)
            # Chat template: the previous generation prompt now opens the reply, then the reply and its
            # end-of-turn, the new user turn (role, words, end-of-turn) and a new generation prompt.
            assert r["prompt_tokens"] == prev["prompt_tokens"] + prev["completion_tokens"] + 1 + words[(r["session_id"], r["turn"])] + 3
            assert r["dispatch_s"] >= prev["dispatch_s"] + prev["e2e_ms"] / 1000
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    page = c.getresponse().read().decode()
    hits = float([ln for ln in page.splitlines() if ln.startswith("vllm:prefix_cache_hits_total{")][0].rsplit(" ", 1)[1])
    assert hits > 0


def test_summary_goodput_breakdowns_and_html(sim, tmp_path):
    ports = sim("--profile", "fixed", "--ttft-ms", "5", "--itl-ms", "1", pods=2)
    reqs = [{"timestamp_ms": i * 5.0, "prompt": "x y z", "max_tokens": 4} for i in range(10)]
    recs = run_client(ports[0], reqs) + run_client(ports[1], reqs[:4], strategy="other")
    recs.append({"status": 503, "error": "no pods", "dispatch_s": 0.0, "e2e_ms": 1.0, "strategy": "other"})
    s = report.summarize(recs, {"ttft_ms": 1000})
    assert s["requests"] == 15 and s["ok"] == 14 and s["errors"] == 1
    assert s["goodput"]["fraction"] == pytest.approx(14 / 15)
    assert report.summarize(recs, {"ttft_ms": 0.001})["goodput"]["fraction"] == 0
    assert {k: v["requests"] for k, v in s["per_pod"].items()} == {f"127.0.0.1:{ports[0]}": 10, f"127.0.0.1:{ports[1]}": 4}
    assert s["per_strategy"]["other"]["requests"] == 5
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        st = s[key]
        assert st["p50"] <= st["p90"] <= st["p95"] <= st["p99"]
    text = report.format_summary(s)
    assert "goodput (ttft_ms <= 1000)" in text and "per pod:" in text
    out = tmp_path / "r.html"
    report.html_report({"a": recs[:10], "b": recs[10:]}, str(out))
    doc = out.read_text()
    assert doc.count("<svg") == 4 and "TTFT distribution" in doc and "Load per pod" in doc


def test_cli_pipeline_and_client_log_replay(sim, tmp_path):
    (port,) = sim("--kv-blocks", "2048", "--speed", "20")
    bench = [os.path.join(ROOT, "scripts", "bench")]
    ds, wl, rec, html = (str(tmp_path / n) for n in ("ds.jsonl", "wl.jsonl", "rec.jsonl", "r.html"))
    subprocess.run(bench + ["dataset", "synthetic-prefix", "--num-prefixes", "2", "--samples-per-prefix", "4",
                            "--prompt-length", "100", "--out", ds], check=True)
    subprocess.run(bench + ["workload", "poisson", "--dataset", ds, "--rate", "50", "--max-tokens", "4", "--out", wl],
                   check=True)
    out = subprocess.run(bench + ["run", "--url", f"http://127.0.0.1:{port}", "--workload", wl, "--out", rec,
                                  "--html", html, "--record-prompts", "--quiet", "--slo-ttft-ms", "1000"],
                         check=True, capture_output=True, text=True).stdout
    assert "requests 8  ok 8" in out and "goodput" in out and os.path.exists(html)
    replay = datasets.from_client_log(rec)
    assert sorted(r["prompt"] for r in replay) == sorted(r["prompt"] for r in datasets.read_jsonl(ds))
    bad = subprocess.run(bench + ["workload", "poisson", "--out", wl], capture_output=True, text=True)
    assert bad.returncode != 0 and "--dataset is required" in bad.stderr


def test_bench_routing_smoke(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "Benchmarks", "bench_routing.py"),
                          "--strategies", "random,prefix-cache,no-such-strategy", "--pods", "2", "--requests", "16", "--prefixes", "2",
                          "--rate", "20", "--prompt-length", "300", "--max-tokens", "8", "--speed", "10",
                          "--quiet", "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TTFT mean" in out.stdout and "hit %" in out.stdout
    row = [ln for ln in out.stdout.splitlines() if ln.startswith("random ")][0]
    assert row.split()[1] == "16" and "1.00x" in row
    # prefix-cache runs and reports what its index believed (idx %); a strategy this build lacks is reported, not dropped.
    prefix = [ln for ln in out.stdout.splitlines() if ln.startswith("prefix-cache ")][0]
    assert prefix.split()[1] == "16" and prefix.split()[8] != "-", prefix
    assert [ln for ln in out.stdout.splitlines() if ln.startswith("no-such-strategy") and "unavailable" in ln]
    doc = (tmp_path / "report.html").read_text()
    assert "<svg" in doc and "random" in doc and (tmp_path / "random.records.jsonl").exists()
