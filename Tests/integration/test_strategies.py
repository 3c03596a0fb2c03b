"""The load-aware strategies through the real Envoy and simulated pods:
each steers as its rule says under a skewed load, a strategy whose signal
is missing falls back visibly (x-switchboard-fallback and a metric), and
blends resolve from the header."""
import collections
import json
import socket

from harness import Stack, chat, free_port, open_stream, wait_until


def load_directly(port, n):
    """n long streams sent straight to a pod (the gateway never sees them); returns the sockets to hold."""
    held = []
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        body = json.dumps(chat(content=f"direct {i}", stream=True, max_tokens=5000)).encode()
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"content-length: {len(body)}\r\n\r\n".encode() + body)
        held.append(c)
    return held


def test_load_and_latency_strategies_send_requests_away_from_a_busy_pod():
    # Pod A carries 6 streams the gateway never routed (clients talking to it
    # directly, 5,000 tokens each, held for the whole test); pod B is idle.
    # Once the gateway's scrape shows A's running requests, every request
    # routed by a load or latency strategy goes to B; random still uses A.
    with Stack(pods=2, itl_ms=20) as s:
        a, b = (f"127.0.0.1:{p}" for p in s.pod_ports)
        held = []
        try:
            held += load_directly(s.pod_ports[0], 6)
            wait_until(lambda: (s.admin("/debug/pods")[1]["models"]["tiny"][0]["metrics"].get("tiny") or {})
                       .get("running") == 6, "the gateway to see pod A's 6 running requests")
            for strategy in ("least-request", "power-of-two", "least-latency"):
                for i in range(12):
                    status, h, p = s.request(chat(content=f"{strategy} {i}", max_tokens=2),
                                             headers={"routing-strategy": strategy})
                    assert status == 200, p[:200]
                    assert h["x-switchboard-pod"] == b, (strategy, i, h["x-switchboard-pod"])
            got = collections.Counter(s.request(chat(content=f"r{i}", max_tokens=2),
                                                headers={"routing-strategy": "random"})[1]["x-switchboard-pod"]
                                      for i in range(24))
            assert got[a] > 0, got  # the busy pod is avoided by the strategies, not unreachable
        finally:
            for c in held:
                c.close()


def test_kv_cache_and_throughput_strategies_send_requests_away_from_a_busy_pod():
    # The simulator's engine model (a paged KV cache, token counters): pod A
    # decodes 6 long streams the gateway never routed; once the scrape shows
    # A's KV usage and token rate (prompt + generation tokens per second)
    # above B's (zero), least-kv-cache and throughput (fewest tokens per
    # second) choose B every time.
    with Stack(pods=2, engine=True, max_tokens=2) as s:
        a, b = (f"127.0.0.1:{p}" for p in s.pod_ports)
        held = []
        try:
            held += load_directly(s.pod_ports[0], 6)

            def busy():
                ms = {e["address"]: (e["metrics"].get("tiny") or {}) for e in s.admin("/debug/pods")[1]["models"]["tiny"]}
                ma, mb = ms.get(a, {}), ms.get(b, {})
                rate = lambda m: (m.get("prompt_tokens_per_s") or 0) + (m.get("generation_tokens_per_s") or 0)  # noqa: E731
                ok = ((ma.get("kv_cache_usage") or 0) > 0 and rate(ma) > 0
                      and mb.get("kv_cache_usage") == 0 and mb.get("prompt_tokens_per_s") is not None)
                return (ma, mb) if ok else None

            seen = wait_until(busy, "pod A's KV usage and token rate, and pod B's zeros, in the gateway's scrape")
            for strategy in ("least-kv-cache", "throughput"):
                for i in range(12):
                    status, h, p = s.request(chat(content=f"{strategy} {i}", max_tokens=2),
                                             headers={"routing-strategy": strategy})
                    assert status == 200, p[:200]
                    assert h["x-switchboard-pod"] == b and "x-switchboard-fallback" not in h, (strategy, i, h, seen)
        finally:
            for c in held:
                c.close()


def test_a_strategy_without_its_signal_falls_back_and_says_so():
    dead_metrics = free_port()
    with Stack(pods=2) as s:
        # Re-point the pods' /metrics at a port nothing serves: every pod goes stale.
        with open(s.pods_file, "w") as f:
            f.write("models:\n  - name: tiny\n    endpoints:\n")
            for p in s.pod_ports:
                f.write(f"      - address: 127.0.0.1:{p}\n        metricsPort: {dead_metrics}\n")
        wait_until(lambda: all(e["health"] != "fresh" for e in s.admin("/debug/pods")[1]["models"]["tiny"])
                   and len(s.admin("/debug/pods")[1]["models"]["tiny"]) == 2, "both pods stale")
        status, h, _ = s.request(chat(), headers={"routing-strategy": "least-kv-cache"})
        assert status == 200
        assert h["x-switchboard-fallback"] == "kv_cache_usage_unknown", h
        assert h["x-switchboard-strategy"] == "least-kv-cache"
        # least-request needs only the gateway's own accounting: no fallback.
        status, h, _ = s.request(chat(), headers={"routing-strategy": "least-request"})
        assert status == 200 and "x-switchboard-fallback" not in h, h
        # A blend drops the part it cannot score and names it.
        status, h, _ = s.request(chat(), headers={"routing-strategy": "least-request:1,throughput:2"})
        assert status == 200 and h["x-switchboard-fallback"] == "throughput:token_rate_unknown", h
        page = s.admin("/metrics")[1]
        assert 'switchboard_routing_fallbacks_total{reason="kv_cache_usage_unknown",strategy="least-kv-cache"} 1.0' in page \
            or 'switchboard_routing_fallbacks_total{strategy="least-kv-cache",reason="kv_cache_usage_unknown"} 1.0' in page, \
            [ln for ln in page.splitlines() if "fallback" in ln]
        # A client cannot fake the header.
        status, h, _ = s.request(chat(), headers={"routing-strategy": "random", "x-switchboard-fallback": "fake"})
        assert status == 200 and "x-switchboard-fallback" not in h, h


def test_fresh_scraped_signals_need_no_fallback_and_blends_resolve():
    with Stack(pods=2) as s:
        # Token rates come from counter deltas: they need two scrapes of each pod.
        wait_until(lambda: all(e["health"] == "fresh" and (e["metrics"].get("tiny") or {}).get("prompt_tokens_per_s") is not None
                               and e["metrics"]["tiny"].get("kv_cache_usage") is not None
                               for e in s.admin("/debug/pods")[1]["models"]["tiny"]),
                   "both pods scraped with token rates and KV usage")
        for strategy in ("least-kv-cache", "least-gpu-cache", "throughput", "least-request:1,least-kv-cache:2"):
            status, h, _ = s.request(chat(), headers={"routing-strategy": strategy})
            assert status == 200 and "x-switchboard-fallback" not in h, (strategy, h)
            assert h["x-switchboard-strategy"] == strategy
        status, _, p = s.request(chat(), headers={"routing-strategy": "least-request:1,random:1"})
        assert status == 400 and b"cannot be blended" in p, p
        status, _, p = s.request(chat(), headers={"routing-strategy": "least-busy-time"})
        assert status == 400 and b"no engine exports" in p, p
        # Decisions are timed per strategy and explained on the admin port.
        page = s.admin("/metrics")[1]
        assert 'switchboard_routing_decision_duration_seconds_count{strategy="least-kv-cache"} 1.0' in page, page
        assert 'switchboard_routing_decision_duration_seconds_count{strategy="blend"} 1.0' in page
        st, x = s.admin("/debug/route?model=tiny&strategy=least-request%3A1%2Cleast-kv-cache%3A2")
        assert st == 200 and x["strategy"] == "least-request:1,least-kv-cache:2", x
        pods = {r["address"]: r for r in x["pods"]}
        assert x["pick"] in pods and x["fallback"] is None
        assert all(set(r["costs"]) == {"least-request", "least-kv-cache"} and r["fresh"] for r in pods.values()), pods
        assert pods[x["pick"]]["score"] == max(r["score"] for r in pods.values())
        assert s.admin("/debug/route?model=nope")[0] == 404
        assert s.admin("/debug/route")[0] == 400
        assert s.admin("/debug/route?model=tiny&strategy=bogus")[0] == 400


def test_session_affinity_keeps_a_session_for_50_turns_and_rehomes_it_when_its_pod_leaves():
    with Stack(pods=3) as s:
        def turn(session=None, extra=None):
            h = {"routing-strategy": "session-affinity"}
            if session:
                h["x-session-id"] = session
            status, headers, p = s.request(chat(content="turn"), headers=h)
            assert status == 200, p[:200]
            return headers
        first = turn()
        sid = first["x-session-id"]  # the gateway made one and returned it
        assert len(sid) == 36, first
        pod = first["x-switchboard-pod"]
        for _ in range(50):
            h = turn(sid)
            assert h["x-switchboard-pod"] == pod and h["x-session-id"] == sid
        # Remove the session's pod from the pods file: the session moves, once, and stays.
        others = [p for p in s.pod_ports if f"127.0.0.1:{p}" != pod]
        with open(s.pods_file, "w") as f:
            f.write("models:\n  - name: tiny\n    endpoints: [" + ", ".join(f"127.0.0.1:{p}" for p in others) + "]\n")
        wait_until(lambda: pod not in {e["address"] for e in s.admin("/debug/pods")[1]["models"]["tiny"]},
                   "the pod to leave the model")
        moved = turn(sid)["x-switchboard-pod"]
        assert moved != pod
        for _ in range(10):
            assert turn(sid)["x-switchboard-pod"] == moved


def test_vtc_basic_charges_each_user_the_pods_real_usage_and_pushes_the_heavy_user_along():
    # Usage accounting is off (serve's default): vtc-basic still asks for each response's usage.
    with Stack(pods=4, max_tokens=8, usage_accounting=None) as s:
        expected = {"heavy": 0, "light": 0}
        pods = {"heavy": [], "light": []}
        for i in range(60):
            user = "light" if i % 11 == 0 else "heavy"  # ~10x the requests, and the tokens
            body = chat(content=f"{user} asks {i} " + "word " * 20, max_tokens=8, user=user, stream=bool(i % 2),
                        **({"stream_options": {"include_usage": True}} if i % 2 else {}))
            status, h, p = s.request(body, headers={"routing-strategy": "vtc-basic"})
            assert status == 200, p[:200]
            if i % 2:
                u = json.loads([e for e in p.decode().split("\n\n") if e.startswith("data: {")][-1][6:])["usage"]
            else:
                u = json.loads(p)["usage"]
            expected[user] += u["prompt_tokens"] + 2 * u["completion_tokens"]
            pods[user].append(h["x-switchboard-pod"])
        got = wait_until(lambda: (lambda u: u if u == expected else None)(s.admin("/debug/vtc")[1]["users"]),
                         f"vtc-basic's charges to equal the pods' usage {expected}")
        assert got["heavy"] > 8 * got["light"], got
        order = {f"127.0.0.1:{p}": i for i, p in enumerate(s.pod_ports)}
        light_mean = sum(order[p] for p in pods["light"]) / len(pods["light"])
        heavy_mean = sum(order[p] for p in pods["heavy"][20:]) / len(pods["heavy"][20:])
        assert heavy_mean > light_mean, (heavy_mean, light_mean)


def test_vtc_basic_keeps_the_light_users_share_of_service_while_a_heavy_user_is_backlogged():
    # Two pods, two users. The heavy user has used ~10x the light user's
    # tokens and then keeps 8 long streams in flight (its backlog); the light
    # user then sends 6 requests. A request's share of service on a batching
    # engine is 1 / (the sequences it shares the pod with + 1). vtc-basic
    # places users on the pod list by their window's tokens relative to the
    # bucket (the reference's fairness window: norm = tokens / bucket, capped
    # at pods - 1): the light user stays at norm < 1, on pod 0, the heavy user
    # at norm 1, on pod 1, so the heavy user's backlog takes nothing from the
    # light user's share. The same sequence under `random` is measured as the
    # contrast (the light user then shares pods with the heavy streams).
    with Stack(pods=2, itl_ms=2) as s:
        order = [f"127.0.0.1:{p}" for p in s.pod_ports]
        in_flight = lambda: sum(e["in_flight_requests"] for e in s.admin("/debug/pods")[1]["models"]["tiny"])  # noqa: E731
        shares = {}
        for strategy in ("vtc-basic", "random"):
            # Usage so far: light ~70 weighted tokens, heavy ~1,300 (real usage, charged when the responses end).
            for user, n, max_tokens in (("light", 1, 30), ("heavy", 2, 300)):
                for i in range(n):
                    status, _, p = s.request(chat(content=f"{user} warm {i}", max_tokens=max_tokens, user=user),
                                             headers={"routing-strategy": strategy})
                    assert status == 200, p[:200]
            held, heavy_on = [], collections.Counter()
            try:
                for i in range(8):
                    c, _, h = open_stream(s, f"heavy backlog {i}", max_tokens=8000, strategy=strategy, user="heavy")
                    pod = h["x-switchboard-pod"]
                    held.append(c)
                    heavy_on[pod] += 1
                light = []
                for i in range(6):
                    status, h, p = s.request(chat(content=f"light asks {i}", max_tokens=30, user="light"),
                                             headers={"routing-strategy": strategy})
                    assert status == 200, p[:200]
                    light.append(h["x-switchboard-pod"])
                shares[strategy] = sum(1 / (1 + heavy_on[p]) for p in light) / len(light)
                if strategy == "vtc-basic":
                    users = s.admin("/debug/vtc")[1]["users"]
                    assert users["heavy"] > 10 * users["light"], users
                    assert all(p == order[0] for p in light), (light, heavy_on)
                    assert heavy_on[order[1]] == 8, heavy_on
            finally:
                for c in held:
                    c.close()
            wait_until(lambda: in_flight() == 0, "the held streams to be released")
        print("light user's mean share of service:", shares)
        assert shares["vtc-basic"] == 1.0, shares
        assert shares["random"] < shares["vtc-basic"], shares


def test_endpoint_picker_mode_envoy_follows_the_list_past_a_dead_first_entry():
    s = Stack(pods=1, endpoint_picker=2)
    live = f"127.0.0.1:{s.pod_ports[0]}"
    dead = free_port()
    # The dead endpoint looks healthy (its metrics come from the live pod), so
    # the gateway will choose it as often as the live one.
    with open(s.pods_file, "w") as f:
        f.write(f"models:\n  - name: tiny\n    endpoints:\n      - address: 127.0.0.1:{dead}\n"
                f"        metricsPort: {s.pod_ports[0]}\n      - {live}\n")
    with s:
        wait_until(lambda: all(e["health"] == "fresh" for e in s.admin("/debug/pods")[1]["models"]["tiny"]),
                   "both endpoints scraped fresh")
        chosen = collections.Counter()
        for i in range(30):
            status, h, p = s.request(chat(content=f"epp {i}"), headers={"x-gateway-destination-endpoint": "1.2.3.4:5"})
            assert status == 200, p[:300]
            assert h["x-vllm-sim-pod"] == live  # whatever was first, the reachable one answered
            chosen[h["x-switchboard-pod"]] += 1
        assert chosen[f"127.0.0.1:{dead}"] > 0, chosen  # the dead first entry was tried and passed over
        # Envoy followed the gateway's list (the envoy.lb metadata override_host reads): it retried
        # exactly the requests whose first entry was the dead pod, never one whose first was live.
        retries = s.stats().get("cluster.vllm_pods.upstream_rq_retry", 0)
        assert retries == chosen[f"127.0.0.1:{dead}"], (retries, chosen)
        # A subset hint narrows the choice.
        for _ in range(10):
            status, h, _ = s.request(chat(), headers={"x-gateway-destination-endpoint-subset": live})
            assert status == 200 and h["x-switchboard-pod"] == live
