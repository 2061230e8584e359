"""The real models (GGUF, quantized) end to end, and against Hugging Face transformers.

The reference files tests/data/gguf_reference/<model>.json are made by
scripts/make_gguf_reference.py: transformers loads the same GGUF file (dequantized to float32 by
the gguf package) and records, for a few prompts, the token ids, the 100 largest next-token logits
and, for a chat prompt, its greedy continuation with the top-2 margin of every step. pagoda
dequantizes those blocks bit for bit as the gguf package does and computes in float32 too, so the
logits agree to accumulated rounding.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pagoda_testing import run_pagoda

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "gguf_reference"
MODELS = {"smollm2": "default_model", "gemma3": "gemma_model"}
LOGIT_TOLERANCE = 1e-3  # absolute, on logits of magnitude ~10-30 (SmolLM2 measures ~3e-5)
MARGIN_FOR_TOKENS = 0.01  # greedy tokens are compared up to the first step this close to a tie (10x the tolerance)


def test_chat_capital_of_france(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "generate", str(default_model), "--chat", "--prompt", "What is the capital of France?",
                   "--temperature", "0", "--max-tokens", "48", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "Paris" in out["text"], out["text"]
    assert out["finish_reason"] == "stop"  # an answer this short ends with the end-of-turn token
    words = out["text"].split()
    assert len(words) >= 3 and all(w.isascii() for w in words), out["text"]


def test_default_model_and_text_mode(pagoda_bin, default_model, monkeypatch):
    # Without MODEL, generate uses the default model from the model cache.
    monkeypatch.setenv("PAGODA_MODEL_CACHE", str(default_model.parent))
    r = run_pagoda(pagoda_bin, "generate", "--prompt", "The capital of France is", "--temperature", "0",
                   "--max-tokens", "8", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


def test_sampling_is_seeded(pagoda_bin, default_model):
    def sample(seed):
        r = run_pagoda(pagoda_bin, "generate", str(default_model), "--prompt", "Once upon a time", "--max-tokens", "12",
                       "--temperature", "1.0", "--top-p", "0.9", "--top-k", "40", "--seed", str(seed), "--json",
                       "--ignore-eos", timeout=600)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["token_ids"]

    a, b, c = sample(7), sample(7), sample(8)
    assert a == b and len(a) == 12
    assert a != c


def reference_cases():
    return sorted(p.stem for p in REFERENCE.glob("*.json")) if REFERENCE.is_dir() else []


def test_reference_for_the_default_model_exists():
    # Made with: python3 scripts/make_gguf_reference.py MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
    #            --out tests/data/gguf_reference/smollm2.json
    assert "smollm2" in reference_cases()


@pytest.mark.parametrize("name", reference_cases())
def test_logits_match_transformers(pagoda_bin, request, name):
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    model = request.getfixturevalue(MODELS[name])
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert digest == ref["model_sha256"], f"{model} is not the file the reference was made from"

    args = ["logits", str(model)]
    for p in ref["prompts"]:
        args += ["--prompt-ids", ",".join(str(i) for i in p["prompt_ids"])]
    r = run_pagoda(pagoda_bin, *args, timeout=900)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    for got, p in zip(results, ref["prompts"]):
        logits = np.array(got["logits"], dtype=np.float64)
        assert logits.shape == (ref["vocab_size"],)
        ids = np.array(p["top_ids"])
        diff = np.abs(logits[ids] - np.array(p["top_logits"])).max()
        assert diff <= LOGIT_TOLERANCE, f"{p['text'][:40]!r}: max |diff| over the top logits {diff}"
        assert int(np.argmax(logits)) == p["top_ids"][0], p["text"][:40]


@pytest.mark.parametrize("name", reference_cases())
def test_tokenization_and_chat_template_match_transformers(pagoda_bin, request, name):
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    model = request.getfixturevalue(MODELS[name])
    for p in ref["prompts"]:
        extra = ["--chat"] if p["kind"] == "chat" else []
        text = p["question"] if p["kind"] == "chat" else p["text"]
        r = run_pagoda(pagoda_bin, "logits", str(model), "--prompt", text, "--top", "1", *extra, timeout=600)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)["results"][0]
        assert got["prompt_tokens"] == len(p["prompt_ids"]), text[:40]
        assert got["top_ids"][0] == p["top_ids"][0], text[:40]


@pytest.mark.parametrize("name", reference_cases())
def test_greedy_matches_transformers(pagoda_bin, request, name):
    """The chat prompt's greedy reply (the first text prompt's continuation for a model without a
    chat template), token for token up to the first step whose top-2 margin is near a tie."""
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    model = request.getfixturevalue(MODELS[name])
    chat = [p for p in ref["prompts"] if "greedy_ids" in p][0]
    want = chat["greedy_ids"]
    decided = next((i for i, m in enumerate(chat["greedy_margins"]) if m < MARGIN_FOR_TOKENS), len(want))
    assert decided >= 4, "the reference's first greedy steps are too close to ties to compare"
    r = run_pagoda(pagoda_bin, "generate", str(model), "--prompt-ids", ",".join(str(i) for i in chat["prompt_ids"]),
                   "--temperature", "0", "--max-tokens", str(len(want)), "--json", timeout=900)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["token_ids"]
    n = min(decided, len(want), len(got))
    assert got[:n] == want[:n]
