"""`pagoda generate` through the engine on the default model: JSONL batches with throughput
reports, stop strings that span tokens, n > 1, and a batch that agrees with single runs."""
import json

import pytest

from pagoda_testing import run_pagoda


def generate(pagoda_bin, model, *args, timeout=600):
    r = run_pagoda(pagoda_bin, "generate", str(model), "--json", *args, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()], r.stderr


PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colors are",
           "In 1969, astronauts", "Water boils at", "The quick brown fox", "My favourite food is"]


def test_jsonl_batch_matches_single_runs_and_reports_throughput(pagoda_bin, default_model, tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"prompt": p, "max_tokens": 8 + i}) for i, p in enumerate(PROMPTS)]
    lines.insert(3, "")  # blank lines are skipped
    path.write_text("\n".join(lines) + "\n")
    outs, err = generate(pagoda_bin, default_model, "--input", str(path), "--temperature", "0", "--ignore-eos")
    assert len(outs) == len(PROMPTS)
    for i, o in enumerate(outs):
        assert o["completion_tokens"] == 8 + i
        assert o["finish_reason"] == "length"
    assert "generated tokens/s" in err and "8 requests" in err
    # Each prompt alone gives the same tokens.
    for i in (0, 5):
        single, _ = generate(pagoda_bin, default_model, "--prompt", PROMPTS[i], "--temperature", "0", "--ignore-eos",
                             "--max-tokens", str(8 + i))
        assert single[0]["token_ids"] == outs[i]["token_ids"]


def test_jsonl_errors_name_the_line(pagoda_bin, default_model, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n{"prompt": 3}\n')
    r = run_pagoda(pagoda_bin, "generate", str(default_model), "--input", str(path))
    assert r.returncode != 0
    assert "line 2" in r.stderr and "prompt" in r.stderr
    path.write_text('{"prompt": "fine"}\nnot json\n')
    r = run_pagoda(pagoda_bin, "generate", str(default_model), "--input", str(path))
    assert r.returncode != 0 and "line 2" in r.stderr
    path.write_text('{"prompt": "fine", "temperature": -1}\n')
    r = run_pagoda(pagoda_bin, "generate", str(default_model), "--input", str(path))
    assert r.returncode != 0 and "temperature" in r.stderr


def test_stop_strings_cut_the_text_even_across_tokens(pagoda_bin, default_model):
    prompt = "Write a sentence about the sea."
    full, _ = generate(pagoda_bin, default_model, "--chat", "--prompt", prompt, "--temperature", "0",
                       "--max-tokens", "40", "--ignore-eos")
    text = full[0]["text"]
    assert len(text) > 40, text
    checked = 0
    for start, length in ((5, 6), (11, 9), (20, 4), (27, 7)):
        stop = text[start:start + length]
        if text.find(stop) != start:  # an earlier occurrence would stop first
            continue
        got, _ = generate(pagoda_bin, default_model, "--chat", "--prompt", prompt, "--temperature", "0",
                          "--max-tokens", "40", "--ignore-eos", "--stop", stop)
        assert got[0]["text"] == text[:start], (stop, got[0]["text"])
        assert got[0]["finish_reason"] == "stop"
        assert got[0]["token_ids"] == full[0]["token_ids"][:len(got[0]["token_ids"])]
        checked += 1
    assert checked >= 2


def test_n_samples_with_a_seed_are_reproducible(pagoda_bin, default_model):
    args = ["--prompt", "Tell me a joke.", "--chat", "--temperature", "1", "--n", "3", "--max-tokens", "12",
            "--seed", "5", "--ignore-eos"]
    a, _ = generate(pagoda_bin, default_model, *args)
    b, _ = generate(pagoda_bin, default_model, *args)
    assert len(a[0]["outputs"]) == 3
    assert a == b
    assert len({tuple(o["token_ids"]) for o in a[0]["outputs"]}) > 1


def test_prompt_too_long_is_refused(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "generate", str(default_model), "--prompt", "hello " * 300, "--max-model-len", "128",
                   "--kv-cache-memory", str(64 << 20))
    assert r.returncode != 0
    assert "maximum context length is 128" in r.stderr, r.stderr
