"""Dataset generators. Output is JSONL, one of two shapes:

  plain:     {"prompt": str, "prompt_tokens": int, ...}
  sessioned: {"session_id": str, "prompts": [str, ...], "completions"?: [...]}

`prompt_tokens` counts words (the simulator's tokens)."""
import json
import math
import random

from .text import count_words, truncated_normal, words

# Prompt length and shared fraction (mean, std) from the Preble paper's
# workload analysis (Srivatsa et al., 2024, Table 2), as the reference toolkit
# lists them.
PREBLE_PRESETS = {
    "toolbench": dict(prompt_length=1835, prompt_length_std=742, shared_proportion=0.85, shared_proportion_std=0.13),
    "embodied-agent": dict(prompt_length=2285, prompt_length_std=471, shared_proportion=0.97, shared_proportion_std=0.14),
    "programming": dict(prompt_length=3871, prompt_length_std=1656, shared_proportion=0.97, shared_proportion_std=0.074),
    "video-qa": dict(prompt_length=9865, prompt_length_std=5976, shared_proportion=0.88, shared_proportion_std=0.32),
    "loogle": dict(prompt_length=23474, prompt_length_std=6105, shared_proportion=0.91, shared_proportion_std=0.24),
}


def synthetic_prefix(num_prefixes=10, samples_per_prefix=20, prompt_length=1000, prompt_length_std=100,
                     shared_proportion=0.9, shared_proportion_std=0.01, seed=0, shuffle=True):
    """Groups of prompts that share a prefix. Per group a shared text of
    mean*share words; per sample a length L ~ N(mean, std) (>= 1) and a shared
    part P ~ N(share*L, share_std*L) in [0, L]; the prompt is the first P words
    of the group's text (extended if P is longer) and L-P fresh words."""
    rng = random.Random(seed)
    rows = []
    for g in range(num_prefixes):
        group_rng = random.Random(f"{seed}:prefix:{g}")
        shared = words(group_rng, max(1, int(prompt_length * shared_proportion))).split()
        for i in range(samples_per_prefix):
            length = int(round(truncated_normal(rng, prompt_length, prompt_length_std, 1)))
            share = int(round(truncated_normal(rng, shared_proportion * length, shared_proportion_std * length, 0, length)))
            while len(shared) < share:
                shared += words(group_rng, share - len(shared)).split()
            suffix = words(rng, length - share)
            prompt = " ".join(shared[:share]) + (" " + suffix if suffix and share else suffix)
            rows.append({"prompt": prompt, "prompt_tokens": length, "prefix_group": g, "shared_tokens": share})
    if shuffle:
        rng.shuffle(rows)
    return rows


def pareto_lengths(rng, mean, std, n):
    """n lengths from a Pareto fitted to (mean, std): alpha = 1 + sqrt(1 + (mean/std)^2),
    scale = mean (alpha-1)/alpha; at least 1."""
    cv = std / mean if mean > 0 else 0
    alpha = 1 + math.sqrt(1 + 1 / (cv * cv)) if cv > 0 else 1e9
    scale = mean * (alpha - 1) / alpha
    return [max(1, int(round(scale / (1 - rng.random()) ** (1 / alpha)))) for _ in range(n)]


def multiturn(num_sessions=100, turns_mean=3.5, turns_std=2.0, prompt_length=80, prompt_length_std=120,
              system_prefix_length=0, seed=0):
    """Conversations: turns per session ~ N(mean, std) (>= 1); each turn's
    length from a Pareto fitted to (mean, std); an optional system prefix
    shared by every session is put in front of the first turn. History is
    resent by the client, so later turns share the earlier ones as prefix."""
    rng = random.Random(seed)
    system = words(random.Random(f"{seed}:system"), system_prefix_length)
    rows = []
    for s in range(num_sessions):
        turns = max(1, int(round(truncated_normal(rng, turns_mean, turns_std, 1))))
        prompts = [words(rng, n) for n in pareto_lengths(rng, prompt_length, prompt_length_std, turns)]
        if system:
            prompts[0] = system + " " + prompts[0]
        rows.append({"session_id": f"s{s}", "prompts": prompts})
    return rows


def from_sharegpt(path, limit=None):
    """ShareGPT JSON (a list of {"id", "conversations": [{"from", "value"}]})
    to sessions of the human turns."""
    with open(path) as f:
        data = json.load(f)
    rows = []
    for i, conv in enumerate(data):
        turns = [t.get("value", "") for t in conv.get("conversations", []) if t.get("from") in ("human", "user")]
        turns = [t for t in turns if t.strip()]
        if turns:
            rows.append({"session_id": str(conv.get("id", i)), "prompts": turns})
        if limit and len(rows) >= limit:
            break
    return rows


def from_client_log(path):
    """Our client's output JSONL back to a plain dataset (successful requests
    only), keeping the original prompt and the tokens it asked for."""
    rows = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("status") != 200 or not r.get("prompt"):
                continue
            rows.append({"prompt": r["prompt"], "prompt_tokens": count_words(r["prompt"]),
                         "max_tokens": r.get("max_tokens") or r.get("completion_tokens")})
    return rows


def write_jsonl(rows, path):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
