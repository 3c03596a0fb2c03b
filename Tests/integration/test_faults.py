"""Fault injection through the real Envoy (issue 18). Each scenario runs
load, injects one fault, and prints one `fault NAME:` line with what the
clients saw, what was lost and how long recovery took; it asserts that
nothing hung, that no request was lost beyond those in flight to the
killed component, and that service recovered. Every loop is bounded in
count and time. (Redis killed: test_limits_redis.py; an L2 cache server
down: test_kv_l2.py; the Kubernetes watch dropped and 410: test_kubernetes.py.)"""
import http.server
import json
import os
import select
import signal
import socket
import struct
import tempfile
import threading
import time

import hpack

from harness import Proc, Stack, binary, chat, free_ports, rss_kib, wait_port, wait_until


class Load:
    """Closed-loop clients recording (start, end, outcome) per request. A
    client that got no response at all (the component it talks to is down)
    waits for `recovered` — set by the test once the component is back, or
    at exit — instead of spinning on refused connections."""

    def __init__(self, stack, workers=4, timeout=30):
        self.stack, self.timeout = stack, timeout
        self.records, self.stop_flag, self.recovered = [], threading.Event(), threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(w,)) for w in range(workers)]

    def run(self, w):
        i = 0
        while not self.stop_flag.is_set() and i < 100_000:
            i += 1
            t0 = time.monotonic()
            try:
                status, _, _ = self.stack.request(chat(content=f"load {w} {i}"), timeout=self.timeout)
                outcome = status
            except Exception as e:  # noqa: BLE001 - recorded and reported
                outcome = f"no response: {type(e).__name__}"
            with self.lock:
                self.records.append((t0, time.monotonic(), outcome))
            if isinstance(outcome, str):
                self.recovered.wait(self.timeout)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.recovered.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)

    def wait_for_successes(self, n, after, what):
        wait_until(lambda: sum(1 for r in self.records if r[0] >= after and r[2] == 200) >= n, what, timeout=30)

    def report(self, name, fault_at):
        recs = sorted(self.records)
        failed = [r for r in recs if r[2] != 200]
        lost = [r for r in failed if isinstance(r[2], str)]
        last_bad_end = max((r[1] for r in failed), default=fault_at)
        recovery = max(0.0, last_bad_end - fault_at)
        kinds = {}
        for r in failed:
            kinds[str(r[2])] = kinds.get(str(r[2]), 0) + 1
        print(f"\nfault {name}: {len(recs)} requests, {len(failed)} failed {kinds or ''}, "
              f"{len(lost)} without a response, recovered {recovery:.2f} s after the fault")
        return failed, lost, recovery


def test_processor_sigkilled_and_restarted_under_load():
    with Stack(pods=2, ttft_ms=2, itl_ms=1) as s:
        with Load(s) as load:
            load.wait_for_successes(50, 0, "50 requests before the fault")
            fault_at = time.monotonic()
            s.switchboard.signal(signal.SIGKILL)
            s.switchboard.wait(5)
            s.start_switchboard()
            restarted_at = time.monotonic()
            load.recovered.set()
            load.wait_for_successes(100, restarted_at, "100 requests after the restart")
        failed, lost, recovery = load.report("processor SIGKILL + restart", fault_at)
        # Clients saw errors only around the outage: an answer every time (Envoy's 5xx), never a hang.
        assert not lost, lost[:5]
        assert all(r[2] in (500, 502, 503, 504) for r in failed), failed[:5]
        assert all(r[0] >= fault_at - 1 for r in failed), "a failure before the fault"
        # Recovered for good: once a request after the restart succeeded, none started later failed.
        first_ok = min(r[0] for r in load.records if r[0] >= restarted_at and r[2] == 200)
        assert not [r for r in failed if r[0] > first_ok], "failures after service came back"


def test_pod_killed_mid_stream():
    """Two pods in separate processes; long streams on both (least-request
    spreads them evenly), read raw and through the OpenAI SDK; one pod
    killed: its streams end early — raw clients can tell (no [DONE]), the
    SDK raises an error — the other pod's complete, and the gateway's
    in-flight count for the dead pod returns to zero."""
    import openai
    p1, p2 = free_ports(2)
    d = tempfile.mkdtemp(prefix="fault-pod-")
    sims = [Proc(f"sim-{p}", [binary("vllm-sim"), "--listen", f"127.0.0.1:{p}", "--ttft-ms", "5", "--itl-ms", "20",
                              "--max-tokens", "400"], d) for p in (p1, p2)]
    try:
        for p in (p1, p2):
            wait_port(p)
        with Stack(pod_ports=[p1, p2], logdir=d) as s:
            wait_until(lambda: all(e["health"] == "fresh" for e in s.admin("/debug/pods")[1]["models"]["tiny"]),
                       "both pods scraped")
            streams = []
            for i in range(8):
                c = socket.create_connection(("127.0.0.1", s.envoy_port), timeout=30)
                body = json.dumps(chat(content=f"long {i}", stream=True, max_tokens=300)).encode()
                c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                          b"routing-strategy: least-request\r\n"
                          + f"content-length: {len(body)}\r\n\r\n".encode() + body)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = c.recv(4096)
                    assert chunk
                    head += chunk
                pod = [l.split(b": ", 1)[1].decode() for l in head.split(b"\r\n") if l.lower().startswith(b"x-switchboard-pod:")]
                streams.append((c, pod[0] if pod else "?", head))
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{s.envoy_port}/v1", api_key="unused", max_retries=0, timeout=30)
            sdk = []
            for i in range(4):
                st = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"sdk {i}"}],
                                                    stream=True, max_tokens=300,
                                                    extra_headers={"routing-strategy": "least-request"})
                sdk.append((st, st.response.headers.get("x-switchboard-pod")))
            on_p1 = [x for x in streams if x[1] == f"127.0.0.1:{p1}"]
            sdk_p1 = [x for x in sdk if x[1] == f"127.0.0.1:{p1}"]
            assert len(on_p1) == 4 and len(sdk_p1) == 2, ([x[1] for x in streams], [x[1] for x in sdk])
            wait_until(lambda: sum(e["in_flight_requests"] for e in s.admin("/debug/pods")[1]["models"]["tiny"]) == 12,
                       "12 streams in flight")
            fault_at = time.monotonic()
            sims[0].signal(signal.SIGKILL)
            sims[0].wait(5)
            results = []
            for c, pod, got in streams:
                c.settimeout(30)
                data = got
                while True:
                    try:
                        chunk = c.recv(65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    data += chunk
                    if b"data: [DONE]" in data and data.endswith(b"0\r\n\r\n"):
                        break
                c.close()
                results.append((pod, b"data: [DONE]" in data))
            sdk_results = []
            for st, pod in sdk:
                try:
                    n = sum(1 for _ in st)
                    sdk_results.append((pod, f"completed ({n} chunks)"))
                except Exception as e:  # noqa: BLE001 - the error the SDK reports is the result
                    sdk_results.append((pod, f"error {type(e).__name__}: {str(e)[:80]}"))
            ended = time.monotonic() - fault_at
            cut = [r for r in results if r[0] == f"127.0.0.1:{p1}"]
            whole = [r for r in results if r[0] == f"127.0.0.1:{p2}"]
            print(f"\nfault pod killed mid-stream: {len(on_p1)} raw streams on the killed pod ended without [DONE], "
                  f"{sum(1 for r in whole if r[1])}/{len(whole)} on the other completed; OpenAI SDK: "
                  f"{[r[1] for r in sdk_results if r[0] == f'127.0.0.1:{p1}']} on the killed pod, "
                  f"{[r[1] for r in sdk_results if r[0] != f'127.0.0.1:{p1}']} on the other; all ended {ended:.2f} s after the kill")
            assert all(not done for _, done in cut), "a stream on the killed pod claimed completion"
            assert all(done for _, done in whole), "a stream on the live pod was cut"
            assert all(r[1].startswith("error") for r in sdk_results if r[0] == f"127.0.0.1:{p1}"), sdk_results
            assert all(r[1].startswith("completed") for r in sdk_results if r[0] != f"127.0.0.1:{p1}"), sdk_results
            wait_until(lambda: next(e for e in s.admin("/debug/pods")[1]["models"]["tiny"]
                                    if e["address"] == f"127.0.0.1:{p1}")["in_flight_requests"] == 0,
                       "the dead pod's in-flight count to return to zero")
            # Once a scrape saw it gone, new requests go to the live pod.
            wait_until(lambda: next(e for e in s.admin("/debug/pods")[1]["models"]["tiny"]
                                    if e["address"] == f"127.0.0.1:{p1}")["health"] != "fresh",
                       "the gateway to notice the dead pod")
            for i in range(10):
                status, h, _ = s.request(chat(content=f"after {i}"))
                assert status == 200 and h["x-switchboard-pod"] == f"127.0.0.1:{p2}"
    finally:
        for p in sims:
            p.stop()


def test_envoy_restarted_under_load():
    """Envoy SIGKILLed and started again on the same ports: clients see
    refused or reset connections only while it is down (requests in flight
    in the killed Envoy are the only ones without an answer); the gateway
    drops the dead Envoy's streams and serves the new one."""
    with Stack(pods=2, ttft_ms=2, itl_ms=1) as s:
        with Load(s) as load:
            load.wait_for_successes(50, 0, "50 requests before the fault")
            fault_at = time.monotonic()
            s.envoy.signal(signal.SIGKILL)
            s.envoy.wait(5)
            down_until = time.monotonic()
            s.start_envoy()
            restarted_at = time.monotonic()
            load.recovered.set()
            load.wait_for_successes(100, restarted_at, "100 requests through the new Envoy")
        failed, lost, recovery = load.report("Envoy SIGKILL + restart", fault_at)
        # Every failure is a connection error around the outage (no HTTP error from a live Envoy).
        assert all(isinstance(r[2], str) for r in failed), failed[:5]
        assert all(fault_at - 31 <= r[0] <= restarted_at + 1 for r in failed), "a failure outside the outage"
        first_ok = min(r[0] for r in load.records if r[0] >= restarted_at and r[2] == 200)
        assert not [r for r in failed if r[0] > first_ok], "failures after service came back"
        # The killed Envoy's ext_proc streams were released.
        wait_until(lambda: s.admin("/debug/stats")[1]["grpc"]["open_streams"] == 0, "no ext_proc stream left open")
        print(f"fault Envoy SIGKILL + restart: down {down_until - fault_at:.2f} s + start {restarted_at - down_until:.2f} s; "
              f"first success {first_ok - restarted_at:.2f} s after the new Envoy listened")


class BadMetrics(http.server.ThreadingHTTPServer):
    """A /metrics endpoint that hangs, answers garbage, answers a huge
    page, or relays the real pod's page (`mode`)."""
    daemon_threads = True

    def __init__(self, port, upstream):
        self.mode, self.upstream, self.release = "good", upstream, threading.Event()
        self.served = {}
        super().__init__(("127.0.0.1", port), BadMetricsHandler)


class BadMetricsHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        srv, mode = self.server, self.server.mode
        srv.served[mode] = srv.served.get(mode, 0) + 1
        if mode == "hang":
            srv.release.wait(60)  # holds the scrape until the test ends
            return
        if mode == "garbage":
            body = os.urandom(3000)
        elif mode == "huge":
            # Announces 1 GiB and keeps sending until the scraper gives up.
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(1 << 30))
            self.end_headers()
            line = b"vllm:num_requests_running{model_name=\"tiny\"} 1\n" * 1000
            try:
                for _ in range(30_000):
                    self.wfile.write(line)
            except OSError:
                pass
            return
        else:
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", srv.upstream, timeout=5)
            c.request("GET", "/metrics")
            body = c.getresponse().read()
            c.close()
        try:
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the scraper gave up first


def test_pod_metrics_hang_garbage_and_huge():
    """One pod's /metrics hangs, then answers random bytes, then a page
    announced as 1 GiB, then recovers. The pod goes stale (the scraper's
    timeout and page limit hold), the other pod's scrapes go on, no client
    request fails, and the pod is fresh again once its page is."""
    p1, p2, mp = free_ports(3)
    d = tempfile.mkdtemp(prefix="fault-metrics-")
    sim = Proc("sim", [binary("vllm-sim"), "--listen", f"127.0.0.1:{p1}", "--listen", f"127.0.0.1:{p2}",
                       "--ttft-ms", "2", "--itl-ms", "1", "--max-tokens", "4"], d)
    bad = BadMetrics(mp, p2)
    threading.Thread(target=bad.serve_forever, daemon=True).start()
    try:
        wait_port(p1)
        wait_port(p2)
        s = Stack(pod_ports=[p1, p2], logdir=d)
        with open(s.pods_file, "w") as f:
            f.write(f"models:\n  - name: tiny\n    endpoints:\n      - 127.0.0.1:{p1}\n"
                    f"      - {{address: 127.0.0.1:{p2}, metricsPort: {mp}}}\n")
        with s:
            def pod(port):
                return next(e for e in s.admin("/debug/pods")[1]["models"]["tiny"] if e["address"] == f"127.0.0.1:{port}")
            wait_until(lambda: pod(p1)["health"] == "fresh" and pod(p2)["health"] == "fresh", "both pods scraped")
            lines = []
            with Load(s, workers=2) as load:
                load.wait_for_successes(20, 0, "20 requests before the fault")
                fault_at = time.monotonic()
                for mode in ("hang", "garbage", "huge"):
                    bad.mode = mode
                    t0 = time.monotonic()
                    before_fail, before_good = pod(p2)["scrape_failures"], pod(p1)["scrapes"]
                    # Stale (or staying stale) and failing again in this mode; the other pod scraped meanwhile.
                    wait_until(lambda: pod(p2)["health"] == "stale" and pod(p2)["scrape_failures"] >= before_fail + 3,
                               f"the pod with a {mode} /metrics to fail 3 scrapes and be stale", timeout=30)
                    p = pod(p2)
                    lines.append(f"{mode}: stale after {time.monotonic() - t0:.2f} s ({p['last_error']}); "
                                 f"healthy pod scraped {pod(p1)['scrapes'] - before_good} times meanwhile")
                    assert pod(p1)["health"] == "fresh"
                    if mode == "huge":
                        assert "larger than 16 MiB" in (p["last_error"] or ""), p["last_error"]
                    assert s.switchboard.alive()
                bad.mode = "good"
                good_at = time.monotonic()
                wait_until(lambda: pod(p2)["health"] == "fresh", "the pod to be fresh again once its page is", timeout=30)
                recovered = time.monotonic() - good_at
                load.wait_for_successes(20, time.monotonic(), "20 requests after recovery")
            failed, lost, _ = load.report("pod /metrics hang, garbage, 1 GiB", fault_at)
            print("fault pod /metrics: " + "; ".join(lines) + f"; fresh again {recovered:.2f} s after its page was")
            assert not failed, failed[:5]
    finally:
        bad.release.set()
        bad.shutdown()
        sim.stop()


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EXT_PROC_HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", "/envoy.service.ext_proc.v3.ExternalProcessor/Process"),
                    (":authority", "switchboard"), ("content-type", "application/grpc"), ("te", "trailers")]


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def read_frames(sock, until, timeout=30):
    """Reads HTTP/2 frames from `sock` into a list of (type, flags, stream,
    payload) until `until(frames)` holds or the peer closes; fails after
    `timeout` seconds."""
    frames, buf, deadline = [], b"", time.monotonic() + timeout
    while not until(frames):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out reading frames; got {len(frames)}"
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]))
            buf = buf[9 + n:]
    return frames


def test_client_opens_streams_and_never_sends():
    """A peer on the processor's socket opens as many ext_proc streams as
    the advertised limit (SETTINGS_MAX_CONCURRENT_STREAMS, 4096) and never
    sends a message: the held streams cost bounded memory and Envoy's
    traffic is not disturbed. One stream more is a protocol error
    (nghttp2: GOAWAY, PROTOCOL_ERROR, after the last accepted stream): the
    gateway closes that connection and every stream it held is released."""
    limit = 4096
    with Stack(pods=2, ttft_ms=2, itl_ms=1) as s:
        with Load(s, workers=2) as load:
            load.wait_for_successes(20, 0, "20 requests before the fault")
            rss_before = rss_kib(s.switchboard.pid)
            c = socket.create_connection(("127.0.0.1", s.grpc_port), timeout=10)
            c.sendall(PREFACE + frame(4, 0, 0))
            read_frames(c, lambda fs: any(f[0] == 4 and not f[1] & 1 for f in fs))
            enc = hpack.Encoder()
            fault_at = time.monotonic()
            c.sendall(frame(4, 1, 0) + b"".join(frame(1, 0x4, 2 * i + 1, enc.encode(EXT_PROC_HEADERS)) for i in range(limit)))
            wait_until(lambda: s.admin("/debug/stats")[1]["grpc"]["open_streams"] >= limit, f"{limit} idle streams open")
            held_kib = rss_kib(s.switchboard.pid) - rss_before
            load.wait_for_successes(50, time.monotonic(), "50 requests while the idle streams are held")
        # The load stops (Envoy closes its own streams), then one stream more:
        # the connection ends and every stream it held goes with it.
        extra_at = time.monotonic()
        c.sendall(frame(1, 0x4, 2 * limit + 1, enc.encode(EXT_PROC_HEADERS)))
        frames = read_frames(c, lambda fs: False)  # until the gateway closes the connection
        goaway = [f for f in frames if f[0] == 7]
        wait_until(lambda: s.admin("/debug/stats")[1]["grpc"]["open_streams"] == 0, "every stream to be released", timeout=30)
        released = time.monotonic() - extra_at
        c.close()
        assert all(s.request(chat(content=f"after {i}"))[0] == 200 for i in range(20))
        failed, lost, _ = load.report("streams opened and never sent", fault_at)
        last_id, code = (int.from_bytes(goaway[0][3][:4], "big"), int.from_bytes(goaway[0][3][4:8], "big")) if goaway else (None, None)
        print(f"fault streams opened and never sent: {limit} held costing {held_kib} KiB RSS "
              f"({held_kib * 1024 // limit} B/stream); stream {limit + 1} got GOAWAY code {code} after stream {last_id} "
              f"({goaway[0][3][8:].decode(errors='replace') if goaway else 'none'}); all released {released:.2f} s later")
        assert goaway and code == 1 and last_id == 2 * limit - 1, goaway
        assert not failed, failed[:5]
        assert s.switchboard.alive()


def test_slow_client_trickling_bytes_to_the_processor():
    """Twenty connections to the processor each send their HTTP/2 preface
    one byte every 250 ms: the gateway closes each when its handshake
    timeout (2 s here, 10 s by default) passes, and Envoy's traffic goes
    on undisturbed."""
    with Stack(pods=2, ttft_ms=2, itl_ms=1, switchboard_args=["--handshake-timeout", "2"]) as s:
        with Load(s, workers=2) as load:
            load.wait_for_successes(20, 0, "20 requests before the fault")
            conns = [socket.create_connection(("127.0.0.1", s.grpc_port), timeout=10) for _ in range(20)]
            fault_at = time.monotonic()
            payload = PREFACE + frame(4, 0, 0)
            cut = {}

            def closed(c):
                try:
                    return c.recv(4096) == b""
                except OSError:
                    return True
            for step in range(len(payload)):  # bounded: 33 bytes, 8.25 s at this pace
                for i, c in enumerate(conns):
                    if i not in cut:
                        try:
                            c.send(payload[step:step + 1])
                        except OSError:
                            cut[i] = time.monotonic() - fault_at
                # Until the next byte is due (the trickle's pace), wait on the gateway closing connections.
                due = time.monotonic() + 0.25
                while len(cut) < len(conns) and due > time.monotonic():
                    open_ = [c for i, c in enumerate(conns) if i not in cut]
                    readable, _, _ = select.select(open_, [], [], max(0.0, due - time.monotonic()))
                    for c in readable:
                        if closed(c):
                            cut[conns.index(c)] = time.monotonic() - fault_at
                if len(cut) == len(conns):
                    break
            stats = s.admin("/debug/stats")[1]["grpc"]
            load.wait_for_successes(20, time.monotonic(), "20 requests after the trickling clients")
        for c in conns:
            c.close()
        failed, lost, _ = load.report("slow client trickling the preface", fault_at)
        times = sorted(cut.values())
        print(f"fault slow client: {len(cut)}/{len(conns)} trickling connections closed by the gateway "
              f"{times[0] if times else 0:.2f}-{times[-1] if times else 0:.2f} s after their first byte (limit 2 s), "
              f"handshake_timeouts={stats['handshake_timeouts']}")
        assert len(cut) == len(conns), f"only {len(cut)} of {len(conns)} trickling connections were closed"
        assert stats["handshake_timeouts"] == len(conns)
        assert not failed, failed[:5]


def test_burst_of_10000_concurrent_streams():
    """10,000 requests sent at once over ten HTTP/2 connections to Envoy,
    each held by the pods for 15 s before its first token, so all are in
    flight together: one ext_proc stream each on the processor (beyond
    one connection's 4096 streams Envoy opens more connections). Every
    request is answered in full; none is lost; the streams all close."""
    import h2.config
    import h2.connection
    import h2.events
    import resource
    n, nconn = 10_000, 10
    # Envoy and the pods each hold one descriptor per request: ~10,000.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the processes started below
    assert hard == resource.RLIM_INFINITY or hard >= n + 2000, \
        f"the burst needs about {n + 2000} descriptors per process; this machine allows {hard} (raise the hard `ulimit -n`)"
    with Stack(pods=2, ttft_ms=15_000, itl_ms=1, max_tokens=2, sim_loops=2) as s:
        socks, conns = [], []
        for _ in range(nconn):
            c = socket.create_connection(("127.0.0.1", s.envoy_port), timeout=60)
            h = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            h.initiate_connection()
            h.increment_flow_control_window(1 << 30)
            c.sendall(h.data_to_send())
            socks.append(c)
            conns.append(h)
        # Envoy's SETTINGS first (its stream limit replaces h2's default of 100).
        for c, h in zip(socks, conns):
            while h.remote_settings.max_concurrent_streams == 100:
                for e in h.receive_data(c.recv(65536)):
                    pass
                c.sendall(h.data_to_send())
        body = json.dumps(chat(content="burst", max_tokens=2)).encode()
        status, done, got = {}, set(), {}
        pending = [[] for _ in range(nconn)]

        def pump(ci):  # request bodies as far as Envoy's flow-control windows allow
            h, q = conns[ci], pending[ci]
            while q and h.local_flow_control_window(q[-1]) >= len(body):
                h.send_data(q.pop(), body, end_stream=True)
            socks[ci].sendall(h.data_to_send())
        t0 = time.monotonic()
        for i in range(n):
            ci = i % nconn
            h = conns[ci]
            sid = h.get_next_available_stream_id()
            h.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", "/v1/chat/completions"),
                                 ("content-type", "application/json"), ("content-length", str(len(body)))])
            pending[ci].append(sid)
            status[(ci, sid)] = None
        for ci in range(nconn):
            pump(ci)
        sent = time.monotonic() - t0
        peak = [0]
        stop = threading.Event()

        def sample():  # for the report only: the processor's open streams, twice a second
            while not stop.wait(0.5):
                try:
                    peak[0] = max(peak[0], s.admin("/debug/stats")[1]["grpc"]["open_streams"])
                except OSError:
                    pass
        threading.Thread(target=sample, daemon=True).start()
        deadline = time.monotonic() + 180
        resets = 0
        while len(done) < n and time.monotonic() < deadline:
            ready, _, _ = select.select(socks, [], [], 5)
            for c in ready:
                ci = socks.index(c)
                h = conns[ci]
                data = c.recv(1 << 20)
                assert data, f"Envoy closed connection {ci} with {n - len(done)} requests unanswered"
                for e in h.receive_data(data):
                    if isinstance(e, h2.events.ResponseReceived):
                        status[(ci, e.stream_id)] = dict(e.headers)[":status"]
                    elif isinstance(e, h2.events.DataReceived):
                        got[(ci, e.stream_id)] = got.get((ci, e.stream_id), b"") + e.data
                        h.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                    elif isinstance(e, h2.events.StreamEnded):
                        done.add((ci, e.stream_id))
                    elif isinstance(e, h2.events.StreamReset):
                        resets += 1
                        done.add((ci, e.stream_id))
                pump(ci)
        elapsed = time.monotonic() - t0
        stop.set()
        for c in socks:
            c.close()
        ok = [k for k in status if status[k] == "200" and b'"choices"' in got.get(k, b"")]
        kinds = {}
        for k, v in status.items():
            if v != "200":
                kinds[str(v)] = kinds.get(str(v), 0) + 1
        wait_until(lambda: s.admin("/debug/stats")[1]["grpc"]["open_streams"] == 0, "every ext_proc stream to close", timeout=60)
        stats = s.admin("/debug/stats")[1]
        print(f"\nfault burst of {n} concurrent streams: sent in {sent:.1f} s, all answered after {elapsed:.1f} s; "
              f"{len(ok)} complete 200s, {n - len(done)} unanswered, {resets} reset, other statuses {kinds or 'none'}; "
              f"processor open streams peaked at {peak[0]} (sampled), "
              f"{stats['grpc']['connections_accepted']} ext_proc connections, protocol errors {stats['grpc']['protocol_errors']}")
        assert len(done) == n, f"{n - len(done)} requests unanswered"
        assert len(ok) == n, (kinds, resets)
        assert stats["grpc"]["protocol_errors"] == 0
