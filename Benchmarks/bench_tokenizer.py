#!/usr/bin/env python3
"""Tokenizer throughput: the gateway's native Swift tokenizer against Python
`tokenizers` (Rust, single thread), same tokenizer.json, same text, same
invocation. Prints MB/s for each and the ratio (target, issue 11: Swift >= 2x).
Asserts nothing.
    scripts/bench-tokenizer [--tokenizer PATH] [--megabytes 8]
Without --tokenizer: the Llama-3-style BPE trained by
Tests/integration/tokenizer_fixtures.py and the tiny model's tokenizer."""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-vllm", "bin", "python")

PY = r"""
import json, os, sys, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1])
lines = open(sys.argv[2], encoding="utf-8").read().split("\n")
size = sum(len(l.encode()) + 1 for l in lines)
best = 1e9
for _ in range(3):
    t0 = time.perf_counter(); n = 0
    for l in lines:
        n += len(t.encode(l, add_special_tokens=False).ids)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"bytes": size, "tokens": n, "seconds": best, "mb_per_s": size / best / 1e6}))
"""


def text(path, megabytes, seed=5):
    rnd = random.Random(seed)
    words = ("the gateway routes each request to a pod whose cache holds its prefix while load stays even "
             "der Überblick café naïve 東京 データ 한국어 Привет мир 12345 3.14 def f(x): return x**2 {\"k\": [1, 2]}").split()
    with open(path, "w", encoding="utf-8") as f:
        size = 0
        while size < megabytes * 1e6:
            line = " ".join(rnd.choice(words) for _ in range(rnd.randint(200, 800)))  # ~2-6 KB prompts
            f.write(line + "\n")
            size += len(line.encode()) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", action="append")
    ap.add_argument("--megabytes", type=float, default=8)
    a = ap.parse_args()
    build = os.environ.get("SWITCHBOARD_BUILD", os.path.join(ROOT, ".build", "release"))
    with tempfile.TemporaryDirectory() as d:
        toks = a.tokenizer
        if not toks:
            subprocess.run([VENV, os.path.join(ROOT, "Tests", "integration", "tokenizer_fixtures.py"), d], check=True,
                           capture_output=True)
            toks = [os.path.join(d, "llama3.json"), os.path.join(d, "gpt2.json"), os.path.join(ROOT, ".tiny-model", "tokenizer.json")]
        corpus = os.path.join(d, "corpus.txt")
        text(corpus, a.megabytes)
        print(f"{'tokenizer':28}{'Swift MB/s':>12}{'Python MB/s':>13}{'ratio':>8}  tokens equal")
        for t in toks:
            sw = json.loads(subprocess.run([os.path.join(build, "switchboard-bench"), "tokenize", t, corpus], check=True,
                                           capture_output=True, text=True).stdout)
            py = json.loads(subprocess.run([VENV, "-c", PY, t, corpus], check=True, capture_output=True, text=True).stdout)
            ratio = sw["mb_per_s"] / py["mb_per_s"]
            print(f"{os.path.basename(t):28}{sw['mb_per_s']:>12.2f}{py['mb_per_s']:>13.2f}{ratio:>7.2f}x  "
                  f"{sw['tokens'] == py['tokens']} ({sw['tokens']} tokens, {sw['bytes'] / 1e6:.1f} MB); target >= 2x: "
                  f"{'met' if ratio >= 2 else 'not met'}")


if __name__ == "__main__":
    sys.exit(main())
