"""`pagoda bench latency` and `pagoda bench throughput` on the default model: they run, count
what they say they count, and refuse bad arguments."""
import json

from pagoda_testing import run_pagoda


def test_bench_latency_json(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "bench", "latency", str(default_model), "-p", "16", "-n", "4", "-r", "2", "--json",
                   timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_prompt"] == 16 and out["n_gen"] == 4 and out["repetitions"] == 2
    for key in ("prompt_tokens_per_s", "decode_tokens_per_s"):
        samples = out[key]["samples"]
        assert len(samples) == 2 and all(s > 0 for s in samples)
        assert abs(out[key]["mean"] - sum(samples) / 2) < 1e-9 * out[key]["mean"]
    assert out["peak_rss_bytes"] > out["model_bytes"] // 2
    assert out["cold_start_to_first_token_s"] > 0


def test_bench_throughput_counts_every_token(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "bench", "throughput", str(default_model), "--num-prompts", "5", "--input-len", "20",
                   "--output-len", "7", "--kv-cache-memory", str(64 << 20), "--max-model-len", "256", "--json",
                   timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["num_requests"] == 5
    assert out["input_tokens"] == 100
    assert out["output_tokens"] == 35
    assert out["output_tokens_per_s"] > 0 and out["requests_per_s"] > 0
    assert abs(out["total_tokens_per_s"] - 135 / out["elapsed_s"]) < 1e-6 * out["total_tokens_per_s"] + 1e-9


def test_bench_throughput_refuses_bad_arguments(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "bench", "throughput", str(default_model), "--num-prompts", "0")
    assert r.returncode != 0 and "--num-prompts" in r.stderr
    r = run_pagoda(pagoda_bin, "bench", "serve", "--base-url", "ftp://x", "--num-prompts", "1")
    assert r.returncode != 0 and "http://" in r.stderr
