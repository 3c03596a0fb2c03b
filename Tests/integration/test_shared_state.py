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
