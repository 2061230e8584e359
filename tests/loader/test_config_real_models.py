"""pagoda's ModelConfig for the real GGUF models in the cache, checked against the metadata as the
reference `gguf` package reads it, and against the same models' Hugging Face configs (fixtures in
tests/data/hf_configs), which must agree on everything the forward pass uses except where llama.cpp's
converter changes the representation (rope pairing, Gemma's norm offset)."""
import json
import subprocess
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install -r tests/requirements.txt)")

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "hf_configs"

GGUF_TO_PAGODA = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3moe": "qwen3_moe", "gemma": "gemma",
                  "gemma2": "gemma2", "gemma3": "gemma3", "phi3": "phi3", "gptneox": "gpt_neox"}


def pagoda_config(pagoda_bin: Path, path: Path) -> dict:
    r = subprocess.run([str(pagoda_bin), "config", str(path), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def metadata(path: Path) -> tuple[dict, set]:
    reader = gguf.GGUFReader(str(path))
    values = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if key == "tokenizer.ggml.tokens":
            values[key] = len(field.data)
            continue
        if key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            continue
        values[key] = field.contents()
    return values, {t.name for t in reader.tensors}


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def model(request, default_model, gemma_model):
    return default_model if request.param == "smollm2" else gemma_model


def test_gguf_metadata_maps_to_config(pagoda_bin, model):
    c = pagoda_config(pagoda_bin, model)
    meta, tensors = metadata(model)
    arch = meta["general.architecture"]
    k = lambda suffix: f"{arch}.{suffix}"  # noqa: E731

    assert c["format"] == "gguf"
    assert c["architecture"] == GGUF_TO_PAGODA[arch]
    assert c["hf_architecture"] == arch
    assert c["name"] == meta["general.name"]
    assert c["num_layers"] == meta[k("block_count")]
    assert c["max_position_embeddings"] == meta[k("context_length")]
    assert c["hidden_size"] == meta[k("embedding_length")]
    assert c["intermediate_size"] == meta[k("feed_forward_length")]
    assert c["num_heads"] == meta[k("attention.head_count")]
    assert c["num_kv_heads"] == meta.get(k("attention.head_count_kv"), meta[k("attention.head_count")])
    head_dim = meta.get(k("attention.key_length"), meta[k("embedding_length")] // meta[k("attention.head_count")])
    assert c["head_dim"] == head_dim
    assert c["vocab_size"] == meta.get(k("vocab_size"), meta["tokenizer.ggml.tokens"])
    assert c["norm_eps"] == pytest.approx(meta[k("attention.layer_norm_rms_epsilon")], rel=1e-12)
    assert c["rope"]["theta"] == pytest.approx(meta.get(k("rope.freq_base"), 10000.0), rel=1e-12)
    assert c["rope"]["rotary_dim"] == meta.get(k("rope.dimension_count"), head_dim)
    assert c["rope"]["style"] == ("gptj" if arch == "llama" else "neox")
    assert c["tie_word_embeddings"] == ("output.weight" not in tensors)
    assert c["qkv_bias"] == ("blk.0.attn_q.bias" in tensors)
    assert c["qk_norm"] == ("blk.0.attn_q_norm.weight" in tensors)
    assert c["bos_token_id"] == meta.get("tokenizer.ggml.bos_token_id")
    assert c["eos_token_ids"][0] == meta["tokenizer.ggml.eos_token_id"]
    assert c["pad_token_id"] == meta.get("tokenizer.ggml.padding_token_id")
    window = meta.get(k("attention.sliding_window"), 0)
    if arch == "gemma3":
        assert c["sliding_window"] == window > 0
        # llama.cpp: every 6th layer is global; the others slide on a local rope with base 10000.
        assert c["layer_sliding_window"] == [0 if (i + 1) % 6 == 0 else window for i in range(c["num_layers"])]
        assert c["rope_local"]["theta"] == 10000.0
        assert c["embedding_scale"] == pytest.approx(meta[k("embedding_length")] ** 0.5)
        assert c["norm_weight_offset"] == 0.0
    else:
        assert c["layer_sliding_window"] == [0] * c["num_layers"]


@pytest.mark.parametrize("name,fixture", [("smollm2", "smollm2-135m-instruct"), ("gemma3", "gemma-3-270m")])
def test_gguf_and_hf_configs_agree(pagoda_bin, default_model, gemma_model, name, fixture):
    g = pagoda_config(pagoda_bin, default_model if name == "smollm2" else gemma_model)
    h = pagoda_config(pagoda_bin, FIXTURES / fixture)
    same = ["architecture", "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
            "num_kv_heads", "head_dim", "max_position_embeddings", "norm", "activation", "gated_mlp",
            "tie_word_embeddings", "qkv_bias", "o_bias", "mlp_bias", "qk_norm", "parallel_residual", "sliding_window",
            "layer_sliding_window", "layer_local_rope", "layer_moe", "attn_logit_softcap", "final_logit_softcap",
            "bos_token_id"]
    for key in same:
        assert g[key] == h[key], key
    for key in ("norm_eps", "attention_scale", "embedding_scale"):
        assert g[key] == pytest.approx(h[key], rel=1e-6), key
    assert g["rope"]["type"] == h["rope"]["type"]
    for key in ("theta", "rotary_dim", "factor", "attention_factor"):
        assert g["rope"][key] == pytest.approx(h["rope"][key], rel=1e-6), key
    assert (g["rope_local"] is None) == (h["rope_local"] is None)
    if h["rope_local"] is not None:
        assert g["rope_local"]["theta"] == h["rope_local"]["theta"]
    assert g["eos_token_ids"][0] in h["eos_token_ids"]
    # The representation llama.cpp's converter changes.
    assert h["rope"]["style"] == "neox"
    assert g["rope"]["style"] == ("gptj" if name == "smollm2" else "neox")
    assert g["norm_weight_offset"] == 0.0
    assert h["norm_weight_offset"] == (1.0 if name == "gemma3" else 0.0)


def test_config_command_rejects_a_broken_gguf(pagoda_bin, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    r = subprocess.run([str(pagoda_bin), "config", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert str(bad) in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
