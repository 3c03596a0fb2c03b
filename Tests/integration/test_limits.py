"""Per-user limits through the real Envoy, embedded store: atomic RPM under
200 parallel requests, OpenAI's 429 shape and headers, the official SDK's
RateLimitError and retry, TPM settled to the pods' real usage."""
import concurrent.futures
import json
import os

import openai
import pytest

from harness import Stack, chat, wait_until


def users_file(d, records):
    path = os.path.join(d, "users.json")
    with open(path, "w") as f:
        json.dump(records, f)
    return path


def limited_stack(records, *args, **kw):
    s = Stack(**kw)
    s.switchboard_args += ["--users-file", users_file(s.logdir, records)] + list(args)
    return s


@pytest.mark.parametrize("phase", ["observer", "in-band"])
def test_two_hundred_parallel_requests_from_one_user_with_rpm_50_admit_exactly_50(phase):
    # observer: Envoy copies the quota into admitted responses; in-band: the gateway adds it.
    with limited_stack([{"name": "alice", "rpm": 50, "tpm": 10_000_000}], "--limit-window", "fixed",
                       "--limit-window-seconds", "3600", pods=2, response_phase=phase) as s:
        def one(i):
            return s.request(chat(content=f"q{i}", max_tokens=4, user="alice"))

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            results = list(pool.map(one, range(200)))
        ok = [r for r in results if r[0] == 200]
        limited = [r for r in results if r[0] == 429]
        assert len(ok) == 50 and len(limited) == 150, sorted(collections_count(r[0] for r in results).items())
        for status, h, p in limited:
            err = json.loads(p)["error"]
            assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests", err
            assert "alice" in err["message"] and "Limit 50" in err["message"], err
            assert int(h["retry-after"]) >= 1, h
            assert h["x-ratelimit-limit-requests"] == "50" and h["x-ratelimit-remaining-requests"] == "0", h
            assert h["x-ratelimit-reset-requests"].endswith(("s", "ms")), h
        # Admitted responses carry the quota too (Envoy copies it from the gateway's decision).
        remaining = sorted(int(h["x-ratelimit-remaining-requests"]) for _, h, _ in ok)
        assert remaining == list(range(50)), remaining
        assert all(h["x-ratelimit-limit-tokens"] == "10000000" for _, h, _ in ok)
        # A user without a record, and a request without a user, are not limited.
        assert s.request(chat(content="x", max_tokens=2, user="bob"))[0] == 200
        status, h, _ = s.request(chat(content="x", max_tokens=2))
        assert status == 200 and "x-ratelimit-limit-requests" not in h
        # A client cannot make Envoy reflect a quota of its own.
        status, h, _ = s.request(chat(content="x", max_tokens=2), headers={"x-switchboard-ratelimit-limit-requests": "999"})
        assert status == 200 and "x-ratelimit-limit-requests" not in h, h
        _, m = s.admin("/metrics")
        assert 'switchboard_limits_rejected_total{limit="requests"} 150' in m


def collections_count(it):
    out = {}
    for x in it:
        out[x] = out.get(x, 0) + 1
    return out


def test_the_openai_sdk_raises_rate_limit_error_and_its_retry_honours_retry_after():
    # A 3-second fixed window and 1 request per window. The patient client
    # sees the statuses of its own attempts: honouring retry-after means one
    # 429, a wait to the next window, then 200 ([429, 200]); a client that
    # ignored it would retry inside the window and collect more 429s.
    with limited_stack([{"name": "carol", "rpm": 1, "tpm": 1_000_000}], "--limit-window", "fixed",
                       "--limit-window-seconds", "3", pods=1) as s:
        base = f"http://127.0.0.1:{s.envoy_port}/v1"
        seen = []
        strict = openai.OpenAI(base_url=base, api_key="none", max_retries=0)
        patient = openai.OpenAI(base_url=base, api_key="none", max_retries=3,
                                http_client=openai.DefaultHttpxClient(event_hooks={"response": [lambda r: seen.append(r.status_code)]}))

        def ask(client):
            return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=2, user="carol")

        for _ in range(3):
            # Use the window up until the SDK raises RateLimitError.
            for _ in range(3):
                try:
                    ask(strict)
                except openai.RateLimitError as e:
                    assert e.status_code == 429 and e.code == "rate_limit_exceeded"
                    assert 1 <= int(e.response.headers["retry-after"]) <= 3
                    break
            else:
                raise AssertionError("the SDK never raised RateLimitError")
            seen.clear()
            r = ask(patient)
            assert r.choices[0].message.content
            if seen != [200]:  # [200]: the window turned between the two calls; try again
                break
        assert seen == [429, 200], seen


def test_tpm_reserves_at_admission_and_settles_to_the_pods_real_usage():
    with limited_stack([{"name": "dave", "rpm": 1000, "tpm": 1_000_000}], "--limit-window", "fixed",
                       "--limit-window-seconds", "3600", pods=2, max_tokens=8) as s:
        used = 0
        for i in range(6):
            stream = bool(i % 2)
            body = chat(content=f"dave asks {i} " + "word " * 30, max_tokens=50, user="dave", stream=stream,
                        **({"stream_options": {"include_usage": True}} if stream else {}))
            status, h, p = s.request(body)
            assert status == 200, p[:200]
            if stream:
                u = json.loads([e for e in p.decode().split("\n\n") if e.startswith("data: {")][-1][6:])["usage"]
            else:
                u = json.loads(p)["usage"]
            used += u["prompt_tokens"] + u["completion_tokens"]
        # Each reservation (prompt estimate + max_tokens 50) is replaced by the real usage when its response ends.
        got = wait_until(lambda: (lambda d: d if d["tokens"] == used else None)(s.admin("/debug/limits?user=dave")[1]["users"]["dave"]),
                         f"dave's window to hold the pods' real usage ({used} tokens)")
        assert got["requests"] == 6


def test_users_cli_edits_the_file_and_the_gateway_reloads_it():
    from harness import binary
    import subprocess
    s = Stack(pods=1)
    path = os.path.join(s.logdir, "users.json")

    def users(*args):
        r = subprocess.run([binary("switchboard"), "users", "--file", path] + list(args), capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    assert users("add", "erin", "--rpm", "1")[0] == 0
    rc, out = users("add", "erin", "--rpm", "5")
    assert rc != 0 and "exists" in out, out
    rc, out = users("list")
    assert rc == 0 and "erin\trpm 1\ttpm 1000 (default)" in out, out
    s.switchboard_args += ["--users-file", path, "--limit-window", "fixed", "--limit-window-seconds", "3600"]
    with s:
        assert s.request(chat(max_tokens=2, user="erin"))[0] == 200
        assert s.request(chat(max_tokens=2, user="erin"))[0] == 429
        assert users("set", "erin", "--rpm", "3")[0] == 0
        wait_until(lambda: s.admin("/debug/limits?user=erin")[1]["users"]["erin"]["rpm"] == 3, "the gateway to reload the users file")
        assert s.request(chat(max_tokens=2, user="erin"))[0] == 200
        # A broken edit is refused and the last good users stay in force.
        with open(path, "w") as f:
            f.write('[{"name": "erin", "rpm": "many"}]')
        wait_until(lambda: "limits.users.rejected" in s.switchboard.output(), "the broken users file to be rejected")
        assert s.admin("/debug/limits?user=erin")[1]["users"]["erin"]["rpm"] == 3
        assert users("delete", "nobody")[0] != 0


def test_an_absurd_max_tokens_is_refused_as_too_large_not_a_crash():
    with limited_stack([{"name": "frank", "rpm": 10, "tpm": 1000}], pods=1) as s:
        status, h, p = s.request(chat(max_tokens=9223372036854775807, user="frank"))
        assert status == 429, p[:300]
        err = json.loads(p)["error"]
        assert err["type"] == "tokens" and "too large" in err["message"].lower() and "retry-after" not in h, (err, h)
        assert s.switchboard.alive()
        assert s.request(chat(max_tokens=2, user="frank"))[0] == 200
