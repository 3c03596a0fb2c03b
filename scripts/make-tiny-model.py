"""Writes a tiny Llama model directory that a real vLLM can serve with
--load-format dummy (random weights, no download): config, a byte-level BPE
tokenizer trained here on generated text, a chat template, special tokens.
Usage: python scripts/make-tiny-model.py OUT_DIR   (needs `tokenizers`)."""
import json
import os
import random
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers


def main(out):
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, "tokenizer.json")):
        return
    rnd = random.Random(7)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "model", "token", "cache", "prefix",
             "route", "pod", "gateway", "switch", "board", "request", "reply", "stream", "hello", "world", "story"]
    corpus = [" ".join(rnd.choice(words) for _ in range(rnd.randint(5, 40))) for _ in range(3000)]
    corpus += ["".join(chr(rnd.randint(32, 126)) for _ in range(60)) for _ in range(500)]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(os.path.join(out, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128,
              "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 32, "vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "torch_dtype": "float32", "bos_token_id": 0, "eos_token_id": 1,
              "pad_token_id": 2, "tie_word_embeddings": False, "hidden_act": "silu"}
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
    template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}<s>assistant:{% endif %}")
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
               "pad_token": "<pad>", "model_max_length": 2048, "chat_template": template, "clean_up_tokenization_spaces": False},
              open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"},
              open(os.path.join(out, "special_tokens_map.json"), "w"), indent=1)
    json.dump({"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}, open(os.path.join(out, "generation_config.json"), "w"))


if __name__ == "__main__":
    main(sys.argv[1])
