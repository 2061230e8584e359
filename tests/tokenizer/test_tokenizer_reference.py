"""pagoda's tokenizer against the references: transformers' conversion of the two cached GGUF
models, the tokenizer.json files transformers writes for them, and tokenizer.json files trained
here with HF tokenizers (Llama 3 and Qwen 2 split regexes, GPT-2 style with digits, and two
SentencePiece-style BPEs with byte fallback). Encoding must give identical ids on the whole
corpus; decoding (with and without special tokens) and streaming must give identical text.
"""
import json
import random
import subprocess
from pathlib import Path

import pytest

import corpus as corpus_mod
import hf_reference as ref

CORPUS = corpus_mod.corpus()
TEXTS = [corpus_mod.as_text(x) for x in CORPUS]

TOKENIZERS = [
    "smollm2-gguf",
    "gemma3-gguf",
    "smollm2-json",
    "gemma3-json",
    "llama3-bpe",
    "qwen2-bpe",
    "gpt2-digits",
    "spm-llama",
    "spm-nfkc-lower",
    "tiny-llama-gguf",
    "tiny-qwen2-gguf",
    "tiny-llama3-gguf",
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokenizer_reference")


@pytest.fixture(scope="session")
def gguf_refs(default_model, gemma_model, cache_dir):
    """transformers' tokenizers for the two GGUF files, also saved as tokenizer.json folders."""
    out = {}
    for key, path in (("smollm2", default_model), ("gemma3", gemma_model)):
        tok = ref.load_gguf_tokenizer(Path(path))
        folder = cache_dir / f"{key}-converted"
        tok.save_pretrained(str(folder))
        out[key] = (tok, folder)
    return out


@pytest.fixture(scope="session")
def tokenizers_under_test(gguf_refs, default_model, gemma_model, cache_dir):
    """name -> (MODEL argument for pagoda, reference with encode/decode)."""
    from tokenizers import Tokenizer, normalizers

    train_texts = [t for t in TEXTS if t]
    built = {
        "llama3-bpe": ref.build_byte_level(train_texts, ref.LLAMA3_SPLIT, None,
                                           ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
                                           bos="<|begin_of_text|>", ignore_merges=True),
        "qwen2-bpe": ref.build_byte_level(train_texts, ref.QWEN2_SPLIT, normalizers.NFC(),
                                          ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
        "gpt2-digits": ref.build_gpt2_digits(train_texts),
        "spm-llama": ref.build_sentencepiece(train_texts, "llama"),
        "spm-nfkc-lower": ref.build_sentencepiece(train_texts, "nfkc-lower"),
    }
    out = {}
    for name, tok in built.items():
        path = cache_dir / f"{name}.json"
        tok.save(str(path))
        out[name] = (str(path), ref.TokenizersReference(Tokenizer.from_file(str(path))))
    # GGUF files written from the trained tokenizers, converted back by transformers.
    tiny = {
        "tiny-llama-gguf": (built["spm-llama"], dict(model="llama", arch="llama", bos="<s>", eos="</s>", unk="<unk>")),
        "tiny-qwen2-gguf": (built["qwen2-bpe"], dict(model="gpt2", arch="qwen2", pre="qwen2", eos="<|im_end|>",
                                                     plain_utf8_tokens=True)),
        "tiny-llama3-gguf": (built["llama3-bpe"], dict(model="gpt2", arch="llama", pre="llama-bpe",
                                                       bos="<|begin_of_text|>", eos="<|eot_id|>", add_bos=True)),
    }
    for name, (tok, kwargs) in tiny.items():
        path = cache_dir / f"{name}.gguf"
        ref.write_gguf_tokenizer(tok, path, **kwargs)
        out[name] = (str(path), ref.HFReference(ref.load_gguf_tokenizer(path)))
    out["smollm2-gguf"] = (str(default_model), ref.HFReference(gguf_refs["smollm2"][0]))
    out["gemma3-gguf"] = (str(gemma_model), ref.HFReference(gguf_refs["gemma3"][0]))
    for key in ("smollm2", "gemma3"):
        folder = gguf_refs[key][1]
        out[f"{key}-json"] = (str(folder), ref.TokenizersReference(Tokenizer.from_file(str(folder / "tokenizer.json"))))
    return out


def _jsonl_line(item) -> str:
    if isinstance(item, bytes):
        return json.dumps({"hex": item.hex()})
    return json.dumps(item, ensure_ascii=True)


def _run(pagoda_bin, args, cache_dir, name):
    proc = subprocess.run([str(pagoda_bin), *args], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"pagoda {' '.join(args[:2])} failed: {proc.stderr[-2000:]}"
    # Split on "\n" only: str.splitlines() would also split inside text at U+2028, U+0085 ...
    return [json.loads(line) for line in proc.stdout.split("\n") if line]


def pagoda_encode(pagoda_bin, model, items, cache_dir, add_special=True):
    path = cache_dir / f"in-{random.random():.12f}.jsonl"
    path.write_text("".join(_jsonl_line(x) + "\n" for x in items), encoding="utf-8")
    args = ["tokenize", model, "--input-jsonl", str(path)]
    if not add_special:
        args.append("--no-special")
    out = _run(pagoda_bin, args, cache_dir, model)
    assert len(out) == len(items)
    return out


def pagoda_decode(pagoda_bin, model, id_lists, cache_dir, skip=False, stream=False):
    path = cache_dir / f"ids-{random.random():.12f}.jsonl"
    path.write_text("".join(json.dumps(ids) + "\n" for ids in id_lists), encoding="utf-8")
    args = ["detokenize", model, "--input-jsonl", str(path)]
    if skip:
        args.append("--skip-special-tokens")
    if stream:
        args.append("--stream")
    out = _run(pagoda_bin, args, cache_dir, model)
    assert len(out) == len(id_lists)
    return out


def _first_mismatch(got, want, inputs):
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"item {i} {inputs[i]!r}:\n pagoda    {g}\n reference {w}"
    return None


def test_corpus_is_large_and_varied():
    assert len(CORPUS) >= 2000
    assert sum(isinstance(x, bytes) for x in CORPUS) >= 50
    joined = "".join(TEXTS)
    for probe in ("é", "Ж", "λ", "ش", "ש", "न", "ไ", "你", "한", "👩‍💻", "👍🏽", "\r\n", "\t", "<|im_start|>", "'re"):
        assert probe in joined, probe


@pytest.mark.parametrize("name", TOKENIZERS)
def test_encode_matches_reference(name, tokenizers_under_test, pagoda_bin, cache_dir):
    model, reference = tokenizers_under_test[name]
    want = [reference.encode(t, add_special_tokens=True) for t in TEXTS]
    got = pagoda_encode(pagoda_bin, model, CORPUS, cache_dir)
    mismatch = _first_mismatch(got, want, CORPUS)
    assert mismatch is None, mismatch
    # Without special tokens, on a slice of the corpus.
    items = CORPUS[:400]
    want = [reference.encode(corpus_mod.as_text(t), add_special_tokens=False) for t in items]
    got = pagoda_encode(pagoda_bin, model, items, cache_dir, add_special=False)
    mismatch = _first_mismatch(got, want, items)
    assert mismatch is None, mismatch


@pytest.mark.parametrize("name", TOKENIZERS)
def test_decode_and_stream_match_reference(name, tokenizers_under_test, pagoda_bin, cache_dir):
    model, reference = tokenizers_under_test[name]
    rng = random.Random(7)
    id_lists = [reference.encode(t, add_special_tokens=True) for t in TEXTS[:1200]]
    vocab = reference.vocab_size()
    # Random id sequences stress the decoders: byte tokens split characters, specials in between.
    for _ in range(300):
        id_lists.append([rng.randrange(vocab) for _ in range(rng.randint(1, 24))])
    for skip in (False, True):
        want = [reference.decode(ids, skip_special_tokens=skip) for ids in id_lists]
        got = pagoda_decode(pagoda_bin, model, id_lists, cache_dir, skip=skip)
        mismatch = _first_mismatch(got, want, id_lists)
        assert mismatch is None, f"skip_special_tokens={skip}: {mismatch}"
        pieces = pagoda_decode(pagoda_bin, model, id_lists, cache_dir, skip=skip, stream=True)
        joined = ["".join(p) for p in pieces]
        mismatch = _first_mismatch(joined, want, id_lists)
        assert mismatch is None, f"stream, skip_special_tokens={skip}: {mismatch}"
        # Streaming releases text as it goes, not all at the end.
        multi = [p for p, ids in zip(pieces, id_lists) if len(ids) > 8]
        assert sum(len(p) > 1 for p in multi) > len(multi) // 2


@pytest.mark.parametrize("name", TOKENIZERS)
def test_round_trip_where_reference_is_lossless(name, tokenizers_under_test, pagoda_bin, cache_dir):
    model, reference = tokenizers_under_test[name]
    items = [t for t in TEXTS if reference.decode(reference.encode(t, add_special_tokens=False)) == t]
    # Lowercasing loses case and ByteLevel's add_prefix_space adds a space: those two tokenizers
    # round-trip only a few strings.
    lossy = name in ("spm-nfkc-lower", "gpt2-digits")
    assert len(items) > (10 if lossy else len(TEXTS) // 3), "too few lossless strings"
    ids = pagoda_encode(pagoda_bin, model, items, cache_dir, add_special=False)
    texts = pagoda_decode(pagoda_bin, model, ids, cache_dir)
    mismatch = _first_mismatch(texts, items, items)
    assert mismatch is None, mismatch


def test_invalid_utf8_on_stdin_matches_python_replacement(pagoda_bin, default_model, gguf_refs):
    tok = gguf_refs["smollm2"][0]
    for raw in corpus_mod.INVALID:
        proc = subprocess.run([str(pagoda_bin), "tokenize", str(default_model), "-"], input=raw, capture_output=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        got = [int(x) for x in proc.stdout.split()]
        assert got == tok.encode(raw.decode("utf-8", errors="replace")), raw


def test_cli_single_text_and_json(pagoda_bin, gemma_model, gguf_refs):
    tok = gguf_refs["gemma3"][0]
    text = "Hello <start_of_turn>user\nwhat's 12345?"
    proc = subprocess.run([str(pagoda_bin), "tokenize", str(gemma_model), text, "--json"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ids"] == tok.encode(text)
    assert out["tokens"] == tok.convert_ids_to_tokens(out["ids"])
    ids = ",".join(str(i) for i in out["ids"])
    proc = subprocess.run([str(pagoda_bin), "detokenize", str(gemma_model), ids, "--skip-special-tokens"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == tok.decode(out["ids"], skip_special_tokens=True) + "\n"
    proc = subprocess.run([str(pagoda_bin), "detokenize", str(gemma_model), ids, "--stream"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pieces = [json.loads(line) for line in proc.stdout.split("\n") if line]
    assert len(pieces) > 3
    assert "".join(pieces) == tok.decode(out["ids"])


def test_bad_tokenizer_files_fail_cleanly(pagoda_bin, tmp_path):
    cases = {
        "not-json.json": "{",
        "no-model.json": "{}",
        "bad-regex.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                      "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"},
                                                        "behavior": "Isolated", "invert": False}}),
        "bad-merge.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}),
        "deep.json": "[" * 100000 + "]" * 100000,
        "unigram.json": json.dumps({"model": {"type": "Unigram", "vocab": []}}),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_text(content)
        proc = subprocess.run([str(pagoda_bin), "tokenize", str(path), "x"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        assert str(path) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)
