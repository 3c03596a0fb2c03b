"""Gateway replicas sharing routing state through a real redis-server
(`serve --shared-state`): two replicas behind one Envoy (its processor
cluster lists both; streams alternate) replay a shared-prefix workload
against simulated pods with the engine model (paged KV cache, prefix-cache
counters). The pods' prefix-cache hit rate with two sharing replicas is
within 2 points of one replica's; with sharing off it is lower. Also: the
peers' in-flight counts reach the other replica, and usage read by the
observer stream of the other replica settles at the routing one."""
import random

from harness import Redis, Stack, chat, metric_sums, open_stream, wait_until

HITS, QUERIES = "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"


def replay(s, groups=16, follow_ups=5, seed=7, between=None):
    """Every group's first turn (a long shared context), then follow-ups in
    a shuffled order; returns the pods' hit rate over the whole replay.
    `between` runs after the first turns (a conversation's next turn comes
    after its answer and the user's think time, which is far longer than
    the replicas' exchange interval: the test waits for the exchange
    instead of sleeping)."""
    rng = random.Random(seed)
    contexts = {g: " ".join(f"g{g}w{i}" for i in range(300)) for g in range(groups)}
    order = list(range(groups)) + rng.sample([g for g in range(groups) for _ in range(follow_ups)], groups * follow_ups)
    before = [metric_sums(f"127.0.0.1:{p}") for p in s.pod_ports]
    for n, g in enumerate(order):
        if n == groups and between:
            between()
        status, _, p = s.request(chat(content=contexts[g] + f" question {n}", max_tokens=2),
                                 headers={"routing-strategy": "prefix-cache"})
        assert status == 200, p[:300]
    after = [metric_sums(f"127.0.0.1:{p}") for p in s.pod_ports]
    hits = sum(a.get(HITS, 0) - b.get(HITS, 0) for a, b in zip(after, before))
    queries = sum(a.get(QUERIES, 0) - b.get(QUERIES, 0) for a, b in zip(after, before))
    assert queries > 0
    return 100.0 * hits / queries


def sample(page, name):
    line = next((l for l in page.splitlines() if l.startswith(name + " ")), None)
    assert line is not None, f"{name} missing from /metrics"
    return float(line.rsplit(" ", 1)[1])


def stack(redis, replicas, shared):
    args = ["--redis", f"127.0.0.1:{redis.port}"] + (["--shared-state"] if shared else [])
    return Stack(pods=4, engine=True, sim_args=["--speed", "50"], max_tokens=2, replicas=replicas, switchboard_args=args)


def test_two_replicas_sharing_state_route_shared_prefixes_as_well_as_one(tmp_path):
    redis = Redis(str(tmp_path)).start()
    try:
        with stack(redis, 1, False) as s:
            one = replay(s)
        with stack(redis, 2, False) as s:
            apart = replay(s)
        redis.cli("FLUSHALL")
        with stack(redis, 2, True) as s:
            applied = 'switchboard_shared_state_events_total{direction="in",result="prefix"}'
            together = replay(s, between=lambda: wait_until(
                lambda: sum(sample(s.admin("/metrics", replica=r)[1], applied) for r in (0, 1)) >= 16,
                "each first turn's prefix insertion to reach the other replica"))
            # Both replicas routed (Envoy alternates streams) and each applied the other's insertions.
            for r in (0, 1):
                _, m = s.admin("/metrics", replica=r)
                assert sample(m, "switchboard_gateway_routed_total") > 0, m[-3000:]
                assert sample(m, applied) > 0, m[-3000:]
        print(f"\nprefix-cache hit rate: one replica {one:.1f}%, two sharing {together:.1f}%, two not sharing {apart:.1f}%")
        assert abs(together - one) <= 2.0, (one, together, apart)
        assert apart < together - 2.0, (one, together, apart)
    finally:
        redis.stop()


def pods_view(s, replica):
    return {e["address"]: e for e in s.admin("/debug/pods", replica=replica)[1]["models"]["tiny"]}


def test_in_flight_counts_reach_the_other_replica_and_least_request_spreads_over_both(tmp_path):
    redis = Redis(str(tmp_path)).start()
    conns = []
    try:
        s = Stack(pods=4, itl_ms=20, replicas=2, switchboard_args=["--redis", f"127.0.0.1:{redis.port}", "--shared-state"])
        with s:
            used = []
            for i in range(4):
                c, _, h = open_stream(s, f"long {i}", strategy="least-request")
                conns.append(c)
                used.append(h["x-switchboard-pod"])
                # Both replicas count every held stream: this replica's own, and its peer's report.
                wait_until(lambda: all(sum(e["in_flight_requests"] + e["peer_in_flight_requests"] for e in pods_view(s, r).values())
                                       == len(conns) for r in (0, 1)),
                           f"both replicas to count {len(conns)} streams in flight")
            # Whichever replica routed each stream, least-request saw the others' load: four pods, four streams.
            assert len(set(used)) == 4, used
            views = [pods_view(s, r) for r in (0, 1)]
            for pod in used:
                own = [views[r][pod]["in_flight_requests"] for r in (0, 1)]
                peer = [views[r][pod]["peer_in_flight_requests"] for r in (0, 1)]
                assert sorted(own) == [0, 1] and peer == own[::-1], (pod, own, peer)
            for c in conns:
                c.close()
            conns = []
            wait_until(lambda: all(e["in_flight_requests"] + e["peer_in_flight_requests"] == 0
                                   for r in (0, 1) for e in pods_view(s, r).values()),
                       "the released streams to leave both replicas' counts")
    finally:
        for c in conns:
            c.close()
        redis.stop()


def test_usage_read_by_the_other_replicas_observer_settles_where_the_request_was_routed(tmp_path):
    redis = Redis(str(tmp_path)).start()
    try:
        with stack(redis, 2, True) as s:
            for i in range(30):
                status, _, p = s.request(chat(content=f"count my tokens {i} " + "x " * i, max_tokens=3))
                assert status == 200, p[:300]
            engine = sum(metric_sums(f"127.0.0.1:{p}").get("vllm:prompt_tokens_total", 0) for p in s.pod_ports)
            # Every response's usage lands in the pod accounting of the replica that routed it,
            # whichever replica's observer stream read it.
            wait_until(lambda: pod_prompt_tokens(s) == engine, f"the gateways' settled prompt tokens to reach the pods' {engine}")
            forwarded = sum(sample(s.admin("/metrics", replica=r)[1], "switchboard_shared_state_usage_forwarded_total") for r in (0, 1))
            applied = sum(sample(s.admin("/metrics", replica=r)[1], 'switchboard_shared_state_events_total{direction="in",result="usage"}')
                          for r in (0, 1))
            print(f"\n30 requests: usage forwarded {forwarded:.0f}, applied {applied:.0f}, prompt tokens {engine:.0f}")
            assert forwarded > 0 and applied == forwarded, (forwarded, applied)
    finally:
        redis.stop()


def pod_prompt_tokens(s):
    total = 0.0
    for r in (0, 1):
        for line in s.admin("/metrics", replica=r)[1].splitlines():
            if line.startswith("switchboard_pod_prompt_tokens_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_redis_down_and_back_routing_goes_on_and_the_replicas_catch_up(tmp_path):
    redis = Redis(str(tmp_path)).start()
    try:
        with stack(redis, 2, True) as s:
            def metric(name, r):
                return sample(s.admin("/metrics", replica=r)[1], name)
            wait_until(lambda: all(metric("switchboard_shared_state_connected", r) == 1 for r in (0, 1)), "both replicas connected")
            redis.stop()
            wait_until(lambda: all(metric("switchboard_shared_state_connected", r) == 0 for r in (0, 1)),
                       "both replicas to notice Redis is gone")
            applied = 'switchboard_shared_state_events_total{direction="in",result="prefix"}'
            before = [metric(applied, r) for r in (0, 1)]
            # Routing never waits on the exchange: every request is answered while Redis is down.
            for i in range(10):
                status, _, p = s.request(chat(content=f"while redis is down {i} " + "y " * 80, max_tokens=2),
                                         headers={"routing-strategy": "prefix-cache"}, timeout=10)
                assert status == 200, p[:300]
            redis.start()
            # The changes made meanwhile waited in each replica's batch and reach the peer once Redis is back.
            wait_until(lambda: sum(metric(applied, r) for r in (0, 1)) >= sum(before) + 10,
                       "the insertions made while Redis was down to reach the other replica")
            assert all(metric("switchboard_shared_state_connected", r) == 1 for r in (0, 1))
    finally:
        redis.stop()
