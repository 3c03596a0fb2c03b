"""Workloads: when each request is sent and what it asks. Output is JSONL,
one request per line, sorted by time:

  {"timestamp_ms": 12.5, "prompt": str, "prompt_tokens": int, "max_tokens": int,
   "session_id"?: str, "turn"?: int, "prefix_group"?: int}

A turn of a session is never sent before the session's previous turn has
completed (the client enforces it); its timestamp is the earliest it may go."""
import csv
import datetime
import json
import math
import random

from .text import block_text, words

MOONCAKE_BLOCK = 512  # tokens per hash_id in the Mooncake FAST'25 traces


# --- arrival processes: lists of times in seconds -------------------------

def constant_arrivals(rate, duration=None, count=None):
    """Evenly spaced arrivals at `rate` per second."""
    n = count if count is not None else int(rate * duration)
    return [i / rate for i in range(n)]


def poisson_arrivals(rng, rate, duration=None, count=None):
    """A Poisson process at `rate` per second."""
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if (duration is not None and t >= duration) or (count is not None and len(out) >= count):
            return out
        out.append(t)


def _thinned(rng, rate_at, peak, duration, count):
    """A non-homogeneous Poisson process with rate rate_at(t) <= peak (thinning)."""
    out, t = [], 0.0
    while True:
        t += rng.expovariate(peak)
        if (duration is not None and t >= duration) or (count is not None and len(out) >= count):
            return out
        if rng.random() * peak <= rate_at(t):
            out.append(t)


def sinusoidal_arrivals(rng, mean, amplitude, period, duration=None, count=None):
    """Poisson arrivals whose rate follows mean + amplitude*sin(2 pi t/period) (floored at 0)."""
    return _thinned(rng, lambda t: max(0.0, mean + amplitude * math.sin(2 * math.pi * t / period)),
                    mean + abs(amplitude), duration, count)


def step_arrivals(rng, steps, duration=None, count=None):
    """Poisson arrivals with a piecewise-constant rate: steps = [(start_s, rate), ...]."""
    steps = sorted(steps)

    def rate_at(t):
        r = 0.0
        for start, rate in steps:
            if t >= start:
                r = rate
        return r
    return _thinned(rng, rate_at, max(r for _, r in steps), duration, count)


def parse_steps(text):
    """"0:2,30:8,60:2" -> [(0, 2), (30, 8), (60, 2)]."""
    out = []
    for part in text.split(","):
        start, rate = part.split(":")
        out.append((float(start), float(rate)))
    return out


# --- filling arrivals with requests from a dataset ------------------------

def from_dataset(rows, arrivals, max_tokens=128, think_ms=0.0):
    """Assigns dataset rows to arrival times. Plain rows are used in order
    (cycling); a sessioned row starts at an arrival and its turns follow, each
    at least think_ms after the previous turn's timestamp."""
    out = []
    if not rows:
        return out
    for i, t in enumerate(arrivals):
        row = rows[i % len(rows)]
        ts = t * 1000.0
        if "prompts" in row:
            sid = f"{row['session_id']}#{i // len(rows)}" if i >= len(rows) else str(row["session_id"])
            for k, p in enumerate(row["prompts"]):
                out.append({"timestamp_ms": round(ts + k * think_ms, 3), "prompt": p, "prompt_tokens": len(p.split()),
                            "max_tokens": max_tokens, "session_id": sid, "turn": k})
        else:
            r = {"timestamp_ms": round(ts, 3), "prompt": row["prompt"],
                 "prompt_tokens": row.get("prompt_tokens", len(row["prompt"].split())),
                 "max_tokens": row.get("max_tokens") or max_tokens}
            if "prefix_group" in row:
                r["prefix_group"] = row["prefix_group"]
            out.append(r)
    out.sort(key=lambda r: (r["timestamp_ms"], r.get("turn", 0)))
    return out


# --- trace replay ----------------------------------------------------------

def _window(rows, time_scale, start_ms, duration_ms, max_requests):
    """Slices [start_ms, start_ms+duration_ms) of trace time, shifts it to 0 and
    scales it (time_scale 0.5 = twice as fast)."""
    out = []
    for ts, row in rows:
        if ts < start_ms:
            continue
        if duration_ms is not None and ts >= start_ms + duration_ms:
            break
        out.append(((ts - start_ms) * time_scale, row))
        if max_requests is not None and len(out) >= max_requests:
            break
    return out


def mooncake(path, time_scale=1.0, start_ms=0.0, duration_ms=None, max_requests=None, max_output=None):
    """The Mooncake FAST'25 trace: each hash_id becomes a deterministic
    512-word block (equal ids, equal text), the prompt is the blocks joined and
    cut to input_length words, max_tokens is output_length."""
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append((float(r["timestamp"]), r))
    rows.sort(key=lambda x: x[0])
    out = []
    cache = {}
    for ts, r in _window(rows, time_scale, start_ms, duration_ms, max_requests):
        n = int(r["input_length"])
        parts, have = [], 0
        for h in r["hash_ids"]:
            if have >= n:
                break
            if h not in cache:
                cache[h] = block_text(h, MOONCAKE_BLOCK).split()
            take = min(MOONCAKE_BLOCK, n - have)
            parts.extend(cache[h][:take])
            have += take
        if have < n:  # more input than blocks: pad deterministically from the row itself
            parts.extend(words(random.Random(f"mooncake-tail:{ts}:{n}"), n - have).split())
        out_len = int(r["output_length"])
        if max_output:
            out_len = min(out_len, max_output)
        out.append({"timestamp_ms": round(ts, 3), "prompt": " ".join(parts), "prompt_tokens": n,
                    "max_tokens": max(1, out_len), "hash_ids": r["hash_ids"]})
    return out


def azure(path, time_scale=1.0, start_ms=0.0, duration_ms=None, max_requests=None, max_output=None, seed=0):
    """The Azure LLM inference trace (TIMESTAMP, ContextTokens, GeneratedTokens):
    exact arrival times (relative to the first row), a fresh prompt of
    ContextTokens words (the trace carries no sharing information), max_tokens
    = GeneratedTokens."""
    rows = []
    first = None
    with open(path) as f:
        for r in csv.DictReader(f):
            ts = r["TIMESTAMP"].strip()
            # "2023-11-16 18:15:46.6805900": seven fractional digits; keep six.
            if "." in ts:
                head, frac = ts.split(".")
                ts = f"{head}.{frac[:6]}"
            t = datetime.datetime.fromisoformat(ts).timestamp() * 1000.0
            first = t if first is None else first
            rows.append((t - first, r))
    rows.sort(key=lambda x: x[0])
    rng = random.Random(seed)
    out = []
    for ts, r in _window(rows, time_scale, start_ms, duration_ms, max_requests):
        n = max(1, int(r["ContextTokens"]))
        out_len = max(1, int(r["GeneratedTokens"]))
        if max_output:
            out_len = min(out_len, max_output)
        out.append({"timestamp_ms": round(ts, 3), "prompt": words(rng, n), "prompt_tokens": n, "max_tokens": out_len})
    return out
