"""`pagoda bench latency`, `throughput` and `decode`: they run, count
what they say they count, and refuse bad arguments."""
import json
from pathlib import Path

import pytest

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


def test_bench_kv_cache_dtype(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "bench", "latency", str(default_model), "-p", "8", "-n", "2", "-r", "1", "--json",
                   "--kv-cache-dtype", "f16", timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kv_cache_dtype"] == "f16"
    r = run_pagoda(pagoda_bin, "bench", "throughput", str(default_model), "--num-prompts", "2", "--input-len", "8",
                   "--output-len", "3", "--kv-cache-memory", str(16 << 20), "--max-model-len", "64", "--json",
                   "--kv-cache-dtype", "bf16", timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["kv_cache_dtype"] == "bf16" and out["output_tokens"] == 6
    for cmd in (["latency", "-p", "8", "-n", "1"], ["throughput", "--num-prompts", "1"]):
        r = run_pagoda(pagoda_bin, "bench", cmd[0], str(default_model), *cmd[1:], "--kv-cache-dtype", "q4_0")
        assert r.returncode != 0 and "auto, f32, f16 or bf16" in r.stderr and "q4_0" in r.stderr


def test_bench_throughput_refuses_bad_arguments(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "bench", "throughput", str(default_model), "--num-prompts", "0")
    assert r.returncode != 0 and "--num-prompts" in r.stderr
    r = run_pagoda(pagoda_bin, "bench", "serve", "--base-url", "ftp://x", "--num-prompts", "1")
    assert r.returncode != 0 and "http://" in r.stderr


GOLDEN_LLAMA = Path(__file__).resolve().parents[1] / "data" / "golden" / "llama" / "config.json"


def _weight_bytes(config, itemsize):
    """The matrices a decode step reads: every layer's seven projections and the lm_head."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or h // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    per_layer = h * (q + 2 * kv) + q * h + 3 * h * config["intermediate_size"]
    return (per_layer * layers + config["vocab_size"] * h) * itemsize


def test_bench_decode_json_on_dummy_weights(pagoda_bin):
    r = run_pagoda(pagoda_bin, "bench", "decode", str(GOLDEN_LLAMA), "--load-format", "dummy", "--dtype", "f16",
                   "--batch", "1,3", "--steps", "4", "--warmup", "1", "--copy-mib", "8", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    config = json.loads(GOLDEN_LLAMA.read_text())
    assert out["weight_bytes_per_step"] == _weight_bytes(config, 2)
    assert [run["batch"] for run in out["runs"]] == [1, 3]
    assert out["copy_gb_per_s"] > 0
    for run in out["runs"]:
        step = run["step_ms"]
        assert 0 < step["min"] <= step["median"] <= step["max"]
        assert abs(run["tokens_per_s"] - run["batch"] / (step["median"] / 1e3)) < 1e-6 * run["tokens_per_s"]
        assert abs(run["weight_bandwidth_of_copy"] - run["weight_gb_per_s"] / out["copy_gb_per_s"]) < 1e-9


def test_bench_decode_profile_on_xpu(pagoda_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("PAGODA_KERNEL_CACHE", str(tmp_path))
    devices = run_pagoda(pagoda_bin, "info", "--devices")
    if "xpu:0" not in devices.stdout:
        pytest.skip("no xpu device in this build or machine: " + devices.stdout.strip().replace("\n", " | "))
    r = run_pagoda(pagoda_bin, "bench", "decode", str(GOLDEN_LLAMA), "--load-format", "dummy", "--dtype", "f16",
                   "--device", "xpu", "--steps", "3", "--warmup", "1", "--profile", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)["runs"][0]
    kernels = {k["kernel"].split()[0]: k for k in run["kernels"]}
    config = json.loads(GOLDEN_LLAMA.read_text())
    layers = config["num_hidden_layers"]
    # q, k, v, o, the stacked gate/up and down per layer, then the lm_head.
    matmuls = sum(k["launches_per_step"] for k in run["kernels"] if k["kernel"].startswith("matmul"))
    assert matmuls == 6 * layers + 1
    assert kernels["attention"]["launches_per_step"] == layers
    assert 0 < run["kernel_ms_per_step"] <= run["step_ms"]["mean"] * 1.05


def test_bench_decode_refuses_bad_arguments(pagoda_bin):
    r = run_pagoda(pagoda_bin, "bench", "decode", str(GOLDEN_LLAMA), "--load-format", "dummy", "--batch", "0")
    assert r.returncode != 0 and "--batch" in r.stderr
    r = run_pagoda(pagoda_bin, "bench", "decode", str(GOLDEN_LLAMA), "--load-format", "bogus")
    assert r.returncode != 0 and "--load-format" in r.stderr
