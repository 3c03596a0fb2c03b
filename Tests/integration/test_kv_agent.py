"""The KV node agent as engines see it: the real switchboard-kv-agent
process, clients in separate processes through the C library
(connectors/python/switchboard_kv.py), data moving through the shared pool."""
import concurrent.futures
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from harness import ROOT, Proc, binary, free_port, wait_port, wait_unix, wait_until

sys.path.insert(0, os.path.join(ROOT, "connectors", "python"))
os.environ.setdefault("SWITCHBOARD_KV_LIB", os.path.join(os.environ.get("SWITCHBOARD_BUILD", os.path.join(ROOT, ".build", "debug")),
                                                         "libswitchboard_kv.so"))
import switchboard_kv as kv  # noqa: E402

PAGE = 64 * 1024


@pytest.fixture
def agent():
    d = tempfile.mkdtemp(prefix="sbkv-")
    sock = os.path.join(d, "kv.sock")
    metrics = free_port()
    p = Proc("kv-agent", [binary("switchboard-kv-agent"), "--socket", sock, "--block-bytes", str(PAGE),
                          "--capacity", "8M", "--policy", "lru", "--default-lease-ms", "3000",
                          "--metrics-listen", f"127.0.0.1:{metrics}"], d)
    wait_unix(sock)
    wait_port(metrics)
    p.metrics_port = metrics
    yield sock, p
    p.stop()


def block_for(key):
    """Block content derived from the key: any process can check it."""
    seed = kv.hexkey(key).encode()
    out = b""
    i = 0
    while len(out) < PAGE:
        out += hashlib.sha256(seed + i.to_bytes(4, "little")).digest()
        i += 1
    return out[:PAGE]


def space_keys(tokens):
    return kv.KeySpace("test", "tiny", "bytes", 16).keys(tokens)


def run_child(code, sock):
    """Runs an 'engine' in its own Python process; returns its stdout."""
    prelude = textwrap.dedent(f"""
        import sys, os, hashlib
        sys.path.insert(0, {os.path.join(ROOT, "connectors", "python")!r})
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        os.environ["SWITCHBOARD_KV_LIB"] = {os.environ["SWITCHBOARD_KV_LIB"]!r}
        import switchboard_kv as kv
        from test_kv_agent import block_for, PAGE
        space = kv.KeySpace("test", "tiny", "bytes", 16)
        c = kv.KVClient({sock!r}, page_size=PAGE)
    """)
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    return r


def test_c_keys_match_the_swift_golden_vector():
    space = kv.KeySpace("ns", "m", "l", 4)
    assert [kv.hexkey(k) for k in space.keys(list(range(1, 10)))] == [
        "8d8a4fb3179d3ae7ef4695a9e06acee3", "562c8ffbe31dc587cb6e823a6639ad08"]


def test_second_engine_reuses_blocks_the_first_stored(agent):
    sock, _ = agent
    tokens_a = list(range(1000, 1000 + 16 * 24))          # 24 blocks
    tokens_b = tokens_a[: 16 * 20] + list(range(9000, 9000 + 16 * 8))  # shares the first 20
    a = run_child(f"""
        keys = space.keys({tokens_a!r})
        print(c.put(keys, [block_for(k) for k in keys]))
    """, sock)
    assert a.returncode == 0, a.stderr
    assert a.stdout.split() == ["24"]
    b = run_child(f"""
        keys = space.keys({tokens_b!r})
        got = c.get(keys)
        ok = all(g == block_for(k) for g, k in zip(got, keys))
        print(len(got), ok, c.exists(keys))
    """, sock)
    assert b.returncode == 0, b.stderr
    assert b.stdout.split() == ["20", "True", "20"]
    st = kv.KVClient(sock, page_size=PAGE).stats()
    assert st["hits"] == 20 and st["puts"] == 24 and st["leases"] == 0
    # The same counters on the Prometheus endpoint.
    import urllib.request
    page = urllib.request.urlopen(f"http://127.0.0.1:{agent[1].metrics_port}/metrics", timeout=5).read().decode()
    assert "switchboard_kv_l1_hits_total 20\n" in page and "switchboard_kv_l1_puts_total 24\n" in page
    assert f"switchboard_kv_l1_bytes_in_total {24 * PAGE}\n" in page
    # Request time per op, as a real histogram: one get by engine B (a lease), one put reservation by A.
    from prometheus_client.parser import text_string_to_metric_families
    fam = next(f for f in text_string_to_metric_families(page) if f.name == "switchboard_kv_request_duration_seconds")
    counts = {x.labels["op"]: x.value for x in fam.samples if x.name.endswith("_count")}
    assert counts["get"] == 1 and counts["putAlloc"] == 1 and counts["putCommit"] == 1, counts
    # A second agent on the same socket refuses to start instead of stealing it.
    d = os.path.dirname(sock)
    second = subprocess.run([binary("switchboard-kv-agent"), "--socket", sock, "--block-bytes", str(PAGE),
                             "--capacity", "8M", "--metrics-listen", ""], capture_output=True, text=True, timeout=20)
    assert second.returncode != 0 and "another agent is already serving" in second.stderr
    assert kv.KVClient(sock, page_size=PAGE).exists(space_keys(tokens_a)) == 24


def test_engine_killed_mid_transfer_leaks_nothing_and_corrupts_nothing(agent):
    sock, _ = agent
    tokens = list(range(50, 50 + 16 * 12))
    # The engine reserves 12 pages, writes 6, then dies before committing.
    r = run_child(f"""
        import signal
        keys = space.keys({tokens!r})
        rid, pages = c.reserve(keys)
        import ctypes
        for k, p in list(zip(keys, pages))[:6]:
            ctypes.memmove(c.page_address(p), block_for(k), PAGE)
        print(rid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """, sock)
    assert r.returncode == -signal.SIGKILL and r.stdout.strip()
    c = kv.KVClient(sock, page_size=PAGE)
    wait_until(lambda: c.stats()["reservations"] == 0, "the agent to reclaim the dead engine's reservation")
    st = c.stats()
    assert st["reservations"] == 0 and st["pages_used"] == 0
    space = kv.KeySpace("test", "tiny", "bytes", 16)
    keys = space.keys(tokens)
    assert c.exists(keys) == 0                                  # nothing half-written became visible
    assert c.put(keys, [block_for(k) for k in keys]) == 12      # the pages are usable again
    assert all(g == block_for(k) for g, k in zip(c.get(keys), keys))
    # A reader killed while holding a lease: the lease goes with it.
    r = run_child(f"""
        import signal
        lid, pages = c.lease(space.keys({tokens!r}))
        print(len(pages), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """, sock)
    assert r.stdout.split() == ["12"]
    wait_until(lambda: c.stats()["leases"] == 0, "the agent to release the dead reader's lease")


def test_clear_errors_and_no_hang_when_the_agent_dies(agent):
    sock, proc = agent
    with pytest.raises(kv.KVError) as e:
        kv.KVClient(sock, page_size=PAGE + 1)
    assert "pages are 65536 bytes" in str(e.value)
    c = kv.KVClient(sock, page_size=PAGE, timeout_ms=1000)
    with pytest.raises(kv.KVError) as e:
        c.commit(12345)
    assert e.value.status == 3
    with pytest.raises(kv.KVError) as e:
        c.put(kv.KeySpace("t", "m", "l", 16).keys(list(range(16))), [b"short"])
    assert e.value.status == 2 and c.stats()["reservations"] == 0   # the reservation was given back
    proc.signal(signal.SIGKILL)
    proc.wait(5)
    # The call must fail, not hang: run it on a worker and bound the wait
    # (a hang fails with this message; the client's own timeout is 1 s).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        f = pool.submit(c.exists, kv.KeySpace("t", "m", "l", 16).keys(list(range(32))))
        try:
            f.result(timeout=30)
            raise AssertionError("exists() succeeded against a dead agent")
        except concurrent.futures.TimeoutError:
            raise AssertionError("exists() hung for 30 s against a dead agent") from None
        except kv.KVError as err:
            assert err.status == kv.E_IO, err
    with pytest.raises(kv.KVError) as e:
        c.stats()
    assert "broken" in str(e.value)
    with pytest.raises(kv.KVError) as e:
        kv.KVClient(sock, page_size=PAGE)
    assert "cannot connect" in str(e.value)


def test_cuda_shim_builds_and_reports_unavailable_cleanly():
    """No GPU in CI: the shim loads, says why CUDA is unavailable, and the
    GPU check script exits 0 saying so. (On a GPU machine the same script
    checks bit-exactness against PyTorch and reports GB/s.)"""
    sys.path.insert(0, os.path.join(ROOT, "connectors", "python"))
    import switchboard_cuda as sc
    os.environ.setdefault("SWITCHBOARD_CUDA_LIB", os.path.join(os.path.dirname(os.environ["SWITCHBOARD_KV_LIB"]),
                                                               "libswitchboard_cuda.so"))
    try:
        sc.Shim(0)
        pytest.skip("a CUDA GPU is present: run scripts/gpu-check")
    except sc.CudaUnavailable as e:
        assert str(e).startswith("CUDA unavailable: ")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu-check")], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "CUDA unavailable" in r.stdout and "GPU checks skipped" in r.stdout
