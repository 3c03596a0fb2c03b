"""prefix-cache through the real Envoy and simulated pods (the engine model,
with its paged KV cache and prefix-cache counters): follow-ups go to the
pod holding their prefix and that pod's vllm:prefix_cache_hits_total rises;
a hot prefix at high load spreads once the imbalance gate trips."""
import collections

from harness import Stack, chat, metric_sums, open_stream, wait_until

HITS = "vllm:prefix_cache_hits_total"


def hits(s):
    return {f"127.0.0.1:{p}": metric_sums(f"127.0.0.1:{p}").get(HITS, 0.0) for p in s.pod_ports}


def test_follow_ups_go_to_the_pod_holding_their_prefix_and_hit_its_cache():
    with Stack(pods=4, engine=True, sim_args=["--speed", "50"], max_tokens=2) as s:
        groups = {g: " ".join(f"g{g}w{i}" for i in range(400)) for g in range(6)}
        home = {}
        for g, shared in groups.items():
            status, h, p = s.request(chat(content=shared + " first question", max_tokens=2),
                                     headers={"routing-strategy": "prefix-cache"})
            assert status == 200, p[:200]
            home[g] = h["x-switchboard-pod"]
        assert len(set(home.values())) > 1, home  # new prefixes are spread, not piled on one pod
        for turn in range(3):
            for g, shared in groups.items():
                before = hits(s)
                status, h, p = s.request(chat(content=shared + f" follow-up {turn}", max_tokens=2),
                                         headers={"routing-strategy": "prefix-cache"})
                assert status == 200, p[:200]
                assert h["x-switchboard-pod"] == home[g], (g, turn, h["x-switchboard-pod"], home[g])
                after = hits(s)
                rose = {pod: after[pod] - before[pod] for pod in after}
                # The shared 400 words are 400+ prompt tokens: at least 384 of them (whole 16-token blocks) hit.
                assert rose[home[g]] >= 384, (g, rose)
                assert all(v == 0 for pod, v in rose.items() if pod != home[g]), rose
        _, m = s.admin("/metrics")
        assert 'switchboard_prefix_cache_decisions_total{selection="prefix_match"} 18' in m, m[-2000:]


def test_a_hot_prefix_spreads_over_the_pods_once_the_imbalance_gate_trips():
    # 24 long streams of one prompt, opened one after another: the gateway's
    # in-flight counts are exact when each decision is made.
    with Stack(pods=4, itl_ms=20, switchboard_args=["--prefix-imbalance", "4"]) as s:
        hot = " ".join(f"hot{i}" for i in range(300))
        conns, pods = [], collections.Counter()
        try:
            for i in range(24):
                c, _, h = open_stream(s, hot, strategy="prefix-cache")
                pod = h["x-switchboard-pod"]
                conns.append(c)
                pods[pod] += 1
            assert len(pods) == 4, pods
            assert max(pods.values()) - min(pods.values()) <= 5, pods
            _, m = s.admin("/metrics")
            imbalance = [l for l in m.splitlines() if l.startswith('switchboard_prefix_cache_decisions_total{selection="imbalance"}')]
            assert imbalance and float(imbalance[0].rsplit(" ", 1)[1]) > 0, imbalance
        finally:
            for c in conns:
                c.close()
        wait_until(lambda: sum(e["in_flight_requests"] for e in s.admin("/debug/pods")[1]["models"]["tiny"]) == 0,
                   "the held streams to be released")
