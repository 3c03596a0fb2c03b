"""Per-user limits shared through a real redis-server: atomic RPM under 200
parallel requests, TPM settled to real usage, users managed with
`switchboard users --redis`, and the failure policy when Redis dies and
comes back (no hang, no restart)."""
import concurrent.futures
import json
import os
import subprocess
import time

import openai

from harness import Redis, Stack, binary, chat, free_port, wait_until


def users(redis, *args):
    r = subprocess.run([binary("switchboard"), "users", "--redis", f"127.0.0.1:{redis.port}"] + list(args),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def redis_stack(redis, *args, **kw):
    s = Stack(**kw)
    s.switchboard_args += ["--redis", f"127.0.0.1:{redis.port}"] + list(args)
    return s


def test_rpm_is_atomic_and_tpm_settles_with_the_shared_store(tmp_path):
    redis = Redis(str(tmp_path)).start()
    try:
        users(redis, "add", "alice", "--rpm", "50", "--tpm", "10000000")
        users(redis, "add", "dave", "--rpm", "1000", "--tpm", "1000000")
        assert "alice\trpm 50\ttpm 10000000" in users(redis, "list")
        assert json.loads(redis.cli("GET", "aibrix-users/alice")) == {"name": "alice", "rpm": 50, "tpm": 10000000}
        with redis_stack(redis, "--limit-window", "fixed", "--limit-window-seconds", "3600", pods=2, max_tokens=8) as s:
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                results = list(pool.map(lambda i: s.request(chat(content=f"q{i}", max_tokens=4, user="alice")), range(200)))
            statuses = [r[0] for r in results]
            assert statuses.count(200) == 50 and statuses.count(429) == 150, statuses
            for status, h, p in results:
                assert h["x-ratelimit-limit-requests"] == "50", h
                if status == 429:
                    assert json.loads(p)["error"]["code"] == "rate_limit_exceeded" and int(h["retry-after"]) >= 1
            # The official SDK sees RateLimitError.
            sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{s.envoy_port}/v1", api_key="none", max_retries=0)
            try:
                sdk.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2, user="alice")
                raise AssertionError("expected RateLimitError")
            except openai.RateLimitError as e:
                assert e.code == "rate_limit_exceeded"
            # TPM: reservations settle to the pods' real usage.
            used = 0
            for i in range(4):
                status, _, p = s.request(chat(content=f"dave {i} " + "word " * 20, max_tokens=50, user="dave"))
                assert status == 200
                u = json.loads(p)["usage"]
                used += u["prompt_tokens"] + u["completion_tokens"]

            def tokens():
                keys = redis.cli("KEYS", "switchboard:limits:{dave}:*").split()
                return sum(int(redis.cli("HGET", k, "t") or 0) for k in keys)

            wait_until(lambda: tokens() == used, f"dave's counters in Redis to hold the real usage ({used} tokens)")
    finally:
        redis.stop()


def test_redis_dying_follows_the_policy_without_hangs_and_limits_return_with_it(tmp_path):
    redis = Redis(str(tmp_path)).start()
    try:
        users(redis, "add", "erin", "--rpm", "3")
        for policy in ("open", "closed"):
            with redis_stack(redis, "--limits-failure-policy", policy, "--limit-window", "fixed",
                             "--limit-window-seconds", "3600", pods=1) as s:
                redis.cli("FLUSHDB")
                users(redis, "add", "erin", "--rpm", "3")
                statuses = [s.request(chat(max_tokens=2, user="erin"))[0] for _ in range(5)]
                assert statuses == [200, 200, 200, 429, 429], (policy, statuses)
                redis.stop()
                # Every request is answered (the command timeout bounds the wait): admitted uncounted, or 503.
                killed_at = time.monotonic()
                down, slowest = [], 0.0
                for _ in range(5):
                    t0 = time.monotonic()
                    down.append(s.request(chat(max_tokens=2, user="erin"), timeout=10))
                    slowest = max(slowest, time.monotonic() - t0)
                if policy == "open":
                    assert [d[0] for d in down] == [200] * 5, down
                else:
                    assert [d[0] for d in down] == [503] * 5, down
                    err = json.loads(down[0][2])["error"]
                    assert err["code"] == "rate_limiter_unavailable" and down[0][1]["retry-after"] == "1"
                _, m = s.admin("/metrics")
                outcome = "admitted" if policy == "open" else "refused"
                assert f'switchboard_limits_store_errors_total{{outcome="{outcome}"}} 5' in m, m[-1500:]
                # Redis back on the same port (empty): the gateway reconnects by itself and limits hold again.
                redis.start()
                back_at = time.monotonic()
                users(redis, "add", "erin", "--rpm", "1")
                wait_until(lambda: s.request(chat(max_tokens=2, user="erin"))[0] == 429,
                           f"limits to hold again after Redis came back ({policy})")
                print(f"\nfault Redis killed, fail-{policy}: 5/5 requests answered {[d[0] for d in down][0]} "
                      f"(slowest {slowest * 1000:.0f} ms), 0 lost; limits enforced again "
                      f"{time.monotonic() - back_at:.2f} s after Redis restarted ({back_at - killed_at:.2f} s down)")
    finally:
        redis.stop()


def test_users_without_a_record_skip_the_round_trip_for_a_while(tmp_path):
    # Many clients send a `user` for abuse tracking only: after Redis says
    # there is no record, that user's requests stop asking for 2 seconds.
    redis = Redis(str(tmp_path)).start()
    try:
        with redis_stack(redis, pods=1) as s:
            def evals():
                stats = redis.cli("INFO", "commandstats")
                line = [ln for ln in stats.splitlines() if ln.startswith("cmdstat_eval:")]
                return int(line[0].split("calls=")[1].split(",")[0]) if line else 0
            before = evals()
            for i in range(20):
                assert s.request(chat(max_tokens=2, user="tracking-only"))[0] == 200
            assert evals() - before <= 2, evals() - before  # one per event loop at most, not 20
            # A record added later takes effect once the memory expires (bounded by its 2 s).
            users(redis, "add", "tracking-only", "--rpm", "1")
            wait_until(lambda: s.request(chat(max_tokens=2, user="tracking-only"))[0] == 429,
                       "the new record to be enforced", timeout=20)
    finally:
        redis.stop()
