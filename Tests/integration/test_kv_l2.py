"""The KV-cache L2 tier as processes: three switchboard-kv-server instances
and two node agents on loopback, engines as clients of the C library in
separate processes. Blocks stored through agent A are read through agent B
(cross-node reuse); a server killed mid-run is failed over or missed within
the deadline; a byte flipped in a stored block is a miss, never returned."""
import concurrent.futures
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request

import pytest

from harness import ROOT, Proc, binary, free_ports, wait_port, wait_unix, wait_until
from test_kv_agent import PAGE, block_for, run_child

sys.path.insert(0, os.path.join(ROOT, "connectors", "python"))
import switchboard_kv as kv  # noqa: E402


def get_json(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


class Tier:
    """Three servers, two agents (agent A and B share the servers, not memory)."""

    def __init__(self, replicas=2, read_timeout_ms=300):
        self.dir = tempfile.mkdtemp(prefix="sbl2-")
        ports = free_ports(3 * 2 + 2)
        self.server_ports, self.server_admin = ports[0:3], ports[3:6]
        self.agent_admin = ports[6:8]
        self.servers = [self._server(i) for i in range(3)]
        members = ",".join(f"127.0.0.1:{p}" for p in self.server_ports)
        self.socks, self.agents = [], []
        for i, name in enumerate("ab"):
            sock = os.path.join(self.dir, f"{name}.sock")
            self.socks.append(sock)
            self.agents.append(Proc(f"kv-agent-{name}", [
                binary("switchboard-kv-agent"), "--socket", sock, "--block-bytes", str(PAGE), "--capacity", "4M",
                "--l2", members, "--l2-replicas", str(replicas), "--l2-read-timeout-ms", str(read_timeout_ms),
                "--l2-health-interval-ms", "100", "--metrics-listen", f"127.0.0.1:{self.agent_admin[i]}"], self.dir))
        for s in self.socks:
            wait_unix(s)
        for p in self.agent_admin:
            wait_port(p)
        for i in range(2):
            wait_until(lambda: self.agent_stats(i)["l2"]["members_up"] == 3, f"agent {i} to admit the three servers")

    def _server(self, i):
        p = Proc(f"kv-server-{i}", [binary("switchboard-kv-server"), "--listen", f"127.0.0.1:{self.server_ports[i]}",
                                    "--block-bytes", str(PAGE), "--capacity", "16M", "--debug-endpoints",
                                    "--metrics-listen", f"127.0.0.1:{self.server_admin[i]}"], self.dir)
        wait_port(self.server_ports[i])
        wait_port(self.server_admin[i])
        return p

    def restart_server(self, i):
        self.servers[i] = self._server(i)

    def agent_stats(self, i):
        return get_json(self.agent_admin[i], "/stats")

    def server_stats(self, i):
        return get_json(self.server_admin[i], "/stats")

    def stop(self):
        for p in self.agents + self.servers:
            p.stop()


@pytest.fixture
def tier():
    t = Tier()
    yield t
    t.stop()


def keys_for(seed, n):
    return kv.KeySpace("test", "tiny", "bytes", 16).keys(list(range(seed, seed + 16 * n)))


def store_through(sock, seed, n):
    r = run_child(f"""
        keys = space.keys(list(range({seed}, {seed} + 16 * {n})))
        print(c.put(keys, [block_for(k) for k in keys]))
    """, sock)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(n)]


def read_through(sock, seed, n):
    """(exists, blocks got, all bytes right) as an engine on `sock` sees them."""
    r = run_child(f"""
        keys = space.keys(list(range({seed}, {seed} + 16 * {n})))
        e = c.exists(keys)
        got = c.get(keys)
        print(e, len(got), all(g == block_for(k) for g, k in zip(got, keys)))
    """, sock)
    assert r.returncode == 0, r.stderr
    e, n_got, ok = r.stdout.split()
    return int(e), int(n_got), ok == "True"


def test_a_prefix_stored_through_agent_a_is_read_through_agent_b(tier):
    store_through(tier.socks[0], 100, 24)
    # Written behind: wait for the copies (24 blocks x 2 replicas), not for time.
    wait_until(lambda: tier.agent_stats(0)["l2"]["blocks_written"] == 48, "agent A to write 48 block copies to L2")
    assert sum(tier.server_stats(i)["blocks"] for i in range(3)) == 48
    assert read_through(tier.socks[1], 100, 24) == (24, 24, True)
    b = tier.agent_stats(1)
    assert b["hits"] == 24 and b["l2"]["hits"] >= 24 and b["l2"]["corrupt"] == 0
    # Now in B's L1: a second read is an L1 hit and asks L2 nothing more.
    before = b["l2"]["hits"]
    assert read_through(tier.socks[1], 100, 24) == (24, 24, True)
    assert tier.agent_stats(1)["l2"]["hits"] == before
    # The per-tier counters on the Prometheus page.
    page = urllib.request.urlopen(f"http://127.0.0.1:{tier.agent_admin[1]}/metrics", timeout=5).read().decode()
    assert "switchboard_kv_l2_hits_total" in page and 'switchboard_kv_l2_member_up{member="127.0.0.1:' in page
    spage = urllib.request.urlopen(f"http://127.0.0.1:{tier.server_admin[0]}/metrics", timeout=5).read().decode()
    assert "switchboard_kv_server_blocks " in spage and "switchboard_kv_server_request_duration_seconds_count" in spage


def test_a_killed_server_is_failed_over_and_the_ring_heals(tier):
    store_through(tier.socks[0], 500, 30)
    wait_until(lambda: tier.agent_stats(0)["l2"]["blocks_written"] == 60, "agent A to write 60 block copies")
    # Kill one server while agent B reads: with two replicas every block is still somewhere.
    tier.servers[1].signal(signal.SIGKILL)
    tier.servers[1].wait(5)
    t0 = time.monotonic()
    e, n, ok = read_through(tier.socks[1], 500, 30)
    elapsed = time.monotonic() - t0
    assert (e, n, ok) == (30, 30, True), (e, n, ok)
    print(f"\nread of 30 blocks with one of three servers killed: {elapsed * 1000:.0f} ms (one client process included)")
    wait_until(lambda: tier.agent_stats(1)["l2"]["members_up"] == 2, "agent B to take the dead server out of the ring")
    # Every read finishes within its deadline even when nothing answers: stop the other two as well
    # (SIGSTOP: connections stay open and silent, the worst case for a client without timeouts).
    for i in (0, 2):
        tier.servers[i].signal(signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            f = pool.submit(read_through, tier.socks[1], 9000, 8)   # never stored: B must ask L2 and give up
            e, n, ok = f.result(timeout=30)
        assert (e, n) == (0, 0)
    finally:
        for i in (0, 2):
            tier.servers[i].signal(signal.SIGCONT)
    # The killed server returns (empty): it is readmitted, and new blocks land on it again.
    tier.restart_server(1)
    for i in range(2):
        wait_until(lambda: tier.agent_stats(i)["l2"]["members_up"] == 3, f"agent {i} to readmit the restarted server")
    store_through(tier.socks[0], 20000, 30)
    wait_until(lambda: tier.server_stats(1)["blocks"] > 0, "blocks to land on the restarted server")
    assert read_through(tier.socks[1], 20000, 30) == (30, 30, True)


def test_a_flipped_byte_in_a_stored_block_is_a_miss_never_returned():
    t = Tier(replicas=1)
    try:
        store_through(t.socks[0], 700, 6)
        wait_until(lambda: t.agent_stats(0)["l2"]["blocks_written"] == 6, "agent A to write 6 blocks")
        keys = keys_for(700, 6)
        # Flip a byte of block 3 wherever it is stored.
        victim = kv.hexkey(keys[3])
        flipped = 0
        for i in range(3):
            try:
                get_json(t.server_admin[i], f"/debug/corrupt?key={victim}&offset=1000", method="POST")
                flipped += 1
            except urllib.error.HTTPError as e:
                assert e.code == 404
        assert flipped == 1
        # B gets the three intact blocks before it, never the damaged one.
        e, n, ok = read_through(t.socks[1], 700, 6)
        assert n == 3 and ok, (e, n, ok)
        assert sum(t.server_stats(i)["corrupt"] for i in range(3)) == 1
    finally:
        t.stop()


def test_the_server_refuses_bad_settings_and_explains_itself():
    import subprocess
    r = subprocess.run([binary("switchboard-kv-server"), "--help"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "consistent-hash ring" in " ".join(r.stdout.split()) and "--high-watermark" in r.stdout
    r = subprocess.run([binary("switchboard-kv-server"), "--low-watermark", "0.99", "--metrics-listen", ""],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "watermarks must satisfy" in r.stderr
    r = subprocess.run([binary("switchboard-kv-agent"), "--l2", "nohost", "--metrics-listen", ""],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "--l2 nohost" in r.stderr


def test_servers_registered_in_redis_join_and_leave_the_agents_rings(tmp_path):
    """Membership from Redis: servers register with heartbeats (Redis's own
    clock), agents list them. A server that starts later joins every ring;
    one stopped cleanly leaves the list at once; one killed ages out."""
    from harness import Redis
    redis = Redis(str(tmp_path)).start()
    procs = []
    try:
        def server(name):
            port, admin = free_ports(2)
            p = Proc(name, [binary("switchboard-kv-server"), "--listen", f"127.0.0.1:{port}", "--block-bytes", str(PAGE),
                            "--capacity", "8M", "--register-redis", f"127.0.0.1:{redis.port}",
                            "--metrics-listen", f"127.0.0.1:{admin}"], str(tmp_path))
            procs.append(p)
            wait_port(port)
            return p, f"127.0.0.1:{port}"

        s1, addr1 = server("kv-server-r1")
        wait_until(lambda: addr1 in redis.cli("ZRANGE", "switchboard:kv:servers", "0", "-1"), "server 1 to register")
        socks, admins = [], []
        for name in "ab":
            sock, admin = str(tmp_path / f"{name}.sock"), free_ports(1)[0]
            procs.append(Proc(f"kv-agent-r{name}", [
                binary("switchboard-kv-agent"), "--socket", sock, "--block-bytes", str(PAGE), "--capacity", "4M",
                "--l2-redis", f"127.0.0.1:{redis.port}", "--l2-replicas", "1", "--l2-health-interval-ms", "100",
                "--metrics-listen", f"127.0.0.1:{admin}"], str(tmp_path)))
            wait_unix(sock)
            wait_port(admin)
            socks.append(sock)
            admins.append(admin)

        def up(i):
            return {m["member"] for m in get_json(admins[i], "/stats")["l2"]["members"] if m["up"]}

        for i in range(2):
            wait_until(lambda: up(i) == {addr1}, f"agent {i} to find server 1 through Redis")
        # Cross-node reuse through the registered server.
        store_through(socks[0], 3000, 8)
        wait_until(lambda: get_json(admins[0], "/stats")["l2"]["blocks_written"] == 8, "agent A to write 8 blocks")
        assert read_through(socks[1], 3000, 8) == (8, 8, True)
        # A server started later joins both rings.
        s2, addr2 = server("kv-server-r2")
        for i in range(2):
            wait_until(lambda: up(i) == {addr1, addr2}, f"agent {i} to admit server 2")
        # Stopped cleanly: it deregisters at once.
        s2.signal(signal.SIGTERM)
        s2.wait(10)
        wait_until(lambda: addr2 not in redis.cli("ZRANGE", "switchboard:kv:servers", "0", "-1"), "server 2 to deregister")
        for i in range(2):
            wait_until(lambda: up(i) == {addr1}, f"agent {i} to drop server 2")
        # Killed: its entry stays in Redis until the heartbeats age out (5 s), the rings drop it sooner.
        s1.signal(signal.SIGKILL)
        s1.wait(5)
        for i in range(2):
            wait_until(lambda: up(i) == set(), f"agent {i} to drop the killed server")
        e, n, ok = read_through(socks[1], 3000, 8)
        assert (n, ok) == (8, True), "B still has the blocks in its own L1"
        e, n, ok = read_through(socks[1], 4000, 4)
        assert (e, n) == (0, 0), "no L2 member: a miss, not a hang"
    finally:
        for p in procs:
            p.stop()
        redis.stop()


def test_the_server_process_survives_fuzzed_frames(tmp_path):
    """Malformed frames against the real binary: every frame with a valid
    header gets a reply (an error for a broken body), broken streams are
    closed, and the process keeps serving."""
    import random
    import socket
    import struct
    port, admin = free_ports(2)
    p = Proc("kv-server-fuzz", [binary("switchboard-kv-server"), "--listen", f"127.0.0.1:{port}", "--block-bytes", "4096",
                                "--capacity", "1M", "--metrics-listen", f"127.0.0.1:{admin}"], str(tmp_path))
    try:
        wait_port(port)
        rng = random.Random(7)
        magic = 0x324C4253

        def frame(op, rid, body):
            return struct.pack("<IIHHIQ", magic, len(body), op, 0, rid, 0) + body

        def read_frame(s):
            head = b""
            while len(head) < 24:
                chunk = s.recv(24 - len(head))
                if not chunk:
                    return None
                head += chunk
            _, n, op, status, rid, _ = struct.unpack("<IIHHIQ", head)
            body = b""
            while len(body) < n:
                chunk = s.recv(n - len(body))
                if not chunk:
                    return None
                body += chunk
            return op, status, rid, body

        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        refused = 0
        for i in range(500):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
            s.sendall(frame(rng.randrange(0, 8), i, body))
            reply = read_frame(s)
            assert reply is not None and reply[2] == i, f"no reply to frame {i}"
            refused += reply[1] != 0
        assert refused > 400, refused
        for bad in (b"\x00" * 24, struct.pack("<IIHHIQ", magic, 1 << 30, 1, 0, 1, 0)):
            b = socket.create_connection(("127.0.0.1", port), timeout=10)
            b.sendall(bad)
            reply = read_frame(b)
            assert reply is not None and reply[1] != 0
            assert b.recv(1) == b"", "a stream that cannot be framed is closed"
            b.close()
        s.sendall(frame(5, 999, b""))      # STATS
        op, status, rid, body = read_frame(s)
        assert status == 0 and rid == 999 and json.loads(body)["errors"] >= refused
        assert p.alive()
    finally:
        p.stop()


def test_the_offload_experiment_runs_and_the_connector_loads_through_l2():
    """A small run of Benchmarks/bench_kv_offload.py (the driver must not
    rot): every request answered, the table printed, and with L1 + L2 the
    simulated engines loaded part of their prompts through the real tier."""
    import re
    import subprocess
    r = subprocess.run([sys.executable, os.path.join(ROOT, "Benchmarks", "bench_kv_offload.py"), "--sessions", "6",
                        "--rates", "4", "--setups", "prefix-cache,l1-l2", "--quiet", "--think-ms", "100"],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(r.stdout[-1500:])
    assert "engine timing simulated, cache tier real" in r.stdout
    loaded = re.search(r"\+ L1 \+ L2 .*loaded by the connector (\d+)%", r.stdout)
    assert loaded and int(loaded.group(1)) > 0, r.stdout
