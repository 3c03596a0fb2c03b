"""The native Swift tokenizer (switchboard tokenize) against Python
`tokenizers`, id for id, on >= 1,000 varied strings (Unicode scripts,
emoji, code, whitespace runs, contractions, added tokens) for four
tokenizer.json files: GPT-2-, Llama-3- and Qwen2-style BPEs trained here
(tokenizer_fixtures.py) and the tiny real-vLLM model's."""
import json
import os
import subprocess

import pytest

from harness import ROOT, binary

VENV = os.path.join(ROOT, ".venv-vllm", "bin", "python")
TINY = os.path.join(ROOT, ".tiny-model", "tokenizer.json")

if not (os.path.exists(VENV) and os.path.exists(TINY)):
    if os.environ.get("SWITCHBOARD_REQUIRE_VLLM"):
        raise RuntimeError("Python tokenizers (.venv-vllm) not installed: run scripts/setup-vllm")
    pytest.skip("Python tokenizers not installed (scripts/setup-vllm); scripts/test always runs this", allow_module_level=True)


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tokenizers"))
    out = subprocess.run([VENV, os.path.join(ROOT, "Tests", "integration", "tokenizer_fixtures.py"), d, TINY],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return d


@pytest.mark.parametrize("name", ["gpt2", "llama3", "qwen2", "extra0"])
def test_swift_tokenizer_equals_python_tokenizers_id_for_id(fixtures, name):
    path = TINY if name == "extra0" else os.path.join(fixtures, f"{name}.json")
    strings = os.path.join(fixtures, "strings.jsonl")
    texts = lines(strings)
    assert len(texts) >= 1000
    for special, expected_file, n in ((False, f"{name}.ids.jsonl", len(texts)), (True, f"{name}.special.ids.jsonl", 200)):
        args = [binary("switchboard"), "tokenize", "--tokenizer", path, "--json-lines"] + (["--add-special-tokens"] if special else [])
        with open(strings) as f:
            data = "".join(f.readlines()[:n])
        got = subprocess.run(args, input=data, capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, got.stderr[-2000:]
        mine = [json.loads(line) for line in got.stdout.splitlines()]
        theirs = lines(os.path.join(fixtures, expected_file))
        assert len(mine) == len(theirs) == n
        bad = [i for i in range(n) if mine[i] != theirs[i]]
        assert not bad, "\n".join(f"{texts[i]!r}\n  python {theirs[i]}\n  swift  {mine[i]}" for i in bad[:5])
    print(f"\n{name}: {len(texts)} strings ({sum(map(len, texts))} characters) identical, 200 with special tokens")
