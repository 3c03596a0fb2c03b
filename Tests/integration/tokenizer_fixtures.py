"""Writes tokenizer.json files trained here with Python `tokenizers` (no
download) in the GPT-2, Llama-3 and Qwen2 styles, and a set of varied test
strings with the ids `tokenizers` gives them, for the Swift tokenizer's
parity test. Run with a Python that has `tokenizers` (.venv-vllm):
    python tokenizer_fixtures.py OUT_DIR [TOKENIZER_JSON ...]
writes OUT_DIR/<name>.json tokenizers, OUT_DIR/strings.jsonl, and
OUT_DIR/<name>.ids.jsonl (one JSON array per string) for each tokenizer,
the extra files given included (named by their position)."""
import json
import os
import random
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

WORDS = ("the quick brown fox jumps over lazy dog model token cache prefix route pod gateway request reply stream "
         "hello world story Straße naïve café résumé über Ελληνικά русский текст 中文 日本語 한국어 العربية हिन्दी "
         "don't I'LL we've she'd they're It'S O'Neil").split()
SNIPPETS = ["def f(x):\n\treturn x**2  # square\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }\r\n",
            "SELECT * FROM t WHERE id=42;", "<div class=\"x\">&nbsp;</div>", "{\"k\": [1, 2.5e-3, null]}",
            "    indented\n\n\n  lines\t\t\tand\u00a0nbsp\u3000ideographic", "https://example.com/a?b=1&c=%20"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "❤️", "🤖", "🚀"]
ODD = ["e\u0301", "A\u030a", "\u212b", "ﬁ", "①②③", "٣٤٥", "½", "Ⅻ", "\u200b", "\u2028", "\x85", "ſ", "'S", "'LL", "'Ve",
       "123456789", "3.14159", "  ", "\t", "\n", "\r\n", " \n ", "!!!", "...", "—", "«»", "\u0000"]


def corpus(rnd, n):
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(3, 30)):
            r = rnd.random()
            if r < 0.6:
                parts.append(rnd.choice(WORDS))
            elif r < 0.7:
                parts.append(rnd.choice(SNIPPETS))
            elif r < 0.8:
                parts.append(rnd.choice(EMOJI))
            elif r < 0.9:
                parts.append(rnd.choice(ODD))
            else:
                parts.append(str(rnd.randint(0, 10**rnd.randint(1, 9))))
        out.append(rnd.choice([" ", "", "  ", "\n"]).join(parts))
    return out


def random_unicode(rnd):
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F300, 0x1F64F), (0x2000, 0x206F), (0x0, 0x1F)]
    return "".join(chr(rnd.randint(*rnd.choice(ranges))) for _ in range(rnd.randint(1, 60)))


def strings(rnd, specials):
    out = corpus(rnd, 500)
    out += [random_unicode(rnd) for _ in range(300)]
    out += ["".join(rnd.choice([" ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "a", "B", "1"]) for _ in range(rnd.randint(1, 40)))
            for _ in range(150)]
    out += [rnd.choice(SNIPPETS) * rnd.randint(1, 3) for _ in range(50)]
    # Added tokens inside text, at edges, next to spaces and words.
    for _ in range(150):
        s = corpus(rnd, 1)[0]
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randint(0, len(s))
            s = s[:at] + rnd.choice(["", " ", "  ", "\n"]) + rnd.choice(specials) + rnd.choice(["", " ", "x"]) + s[at:]
        out.append(s)
    out += ["", " ", "a", "'s", "'S", " 's", "ſ's", "123", "1234567", "   x", "x   ", "\n\n", " \n\n x"]
    # Long single pieces (the heap-merge path): letter runs, digit runs, spaces, punctuation, non-Latin.
    out += [rnd.choice(WORDS[:40]) * rnd.randint(10, 400) for _ in range(40)]
    out += ["9" * 500, " " * 300 + "x", "!?" * 200, "日本語" * 100, "e\u0301" * 120]
    return out


def train(style, rnd):
    text = corpus(rnd, 4000) + [random_unicode(rnd) for _ in range(1000)]
    if style == "gpt2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        specials = [AddedToken("<|endoftext|>", special=True)]
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    elif style == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = [AddedToken(t, special=True) for t in ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                                                         "<|start_header_id|>", "<|end_header_id|>"]]
    else:
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = [AddedToken(t, special=True) for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]]
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    if style == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                                           special_tokens=[("<|begin_of_text|>", bos)])
        # Non-special added tokens with strip flags.
        tok.add_tokens([AddedToken("<tool>", lstrip=True, rstrip=True, special=False)])
    return tok


def main(out, extra):
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(11)
    toks = {style: train(style, rnd) for style in ("gpt2", "llama3", "qwen2")}
    for name, tok in toks.items():
        tok.save(os.path.join(out, f"{name}.json"))
    for i, path in enumerate(extra):
        toks[f"extra{i}"] = Tokenizer.from_file(path)
    specials = ["<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<tool>", "<s>", "</s>"]
    ss = strings(rnd, specials)
    with open(os.path.join(out, "strings.jsonl"), "w") as f:
        for s in ss:
            f.write(json.dumps(s) + "\n")
    for name, tok in toks.items():
        with open(os.path.join(out, f"{name}.ids.jsonl"), "w") as f:
            for s in ss:
                f.write(json.dumps(tok.encode(s, add_special_tokens=False).ids) + "\n")
        with open(os.path.join(out, f"{name}.special.ids.jsonl"), "w") as f:
            for s in ss[:200]:
                f.write(json.dumps(tok.encode(s, add_special_tokens=True).ids) + "\n")
    print(json.dumps({"strings": len(ss), "tokenizers": sorted(toks)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
