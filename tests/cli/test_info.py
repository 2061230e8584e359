"""`pagoda info` on the default model (GGUF) and on an HF folder of safetensors, checked against
what the reference Python packages (`gguf`, `safetensors`) read from the same files."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pagoda_testing import run_pagoda


def info_json(pagoda_bin, path) -> dict:
    r = run_pagoda(pagoda_bin, "info", str(path), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_info_default_model_matches_gguf_reader(pagoda_bin, default_model):
    import gguf
    reader = gguf.GGUFReader(str(default_model))
    field = lambda key: reader.fields[key].contents()
    j = info_json(pagoda_bin, default_model)
    assert j["format"] == "gguf" and j["gguf_version"] == 3
    assert j["architecture"] == "llama"
    assert j["num_layers"] == field("llama.block_count") == 30
    assert j["num_heads"] == field("llama.attention.head_count")
    assert j["num_kv_heads"] == field("llama.attention.head_count_kv")
    assert j["hidden_size"] == field("llama.embedding_length")
    assert j["intermediate_size"] == field("llama.feed_forward_length")
    assert j["context_length"] == field("llama.context_length")
    assert j["vocab_size"] == len(reader.fields["tokenizer.ggml.tokens"].data) == 49152
    assert j["head_dim"] == j["hidden_size"] // j["num_heads"]
    assert j["tokenizer"].startswith("gpt2")
    assert j["chat_template"] is True
    assert j["num_tensors"] == len(reader.tensors)
    assert j["parameters"] == sum(int(np.prod(t.shape)) for t in reader.tensors)
    ref_mix = Counter(t.tensor_type.name.lower() for t in reader.tensors)
    assert {k: v["tensors"] for k, v in j["tensor_types"].items()} == dict(ref_mix)
    ref_bytes = Counter()
    for t in reader.tensors:
        ref_bytes[t.tensor_type.name.lower()] += int(t.n_bytes)
    assert {k: v["bytes"] for k, v in j["tensor_types"].items()} == dict(ref_bytes)


def test_info_default_model_text(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "info", str(default_model))
    assert r.returncode == 0, r.stderr
    assert "architecture   llama" in r.stdout
    assert "layers         30" in r.stdout
    assert "q4_1" in r.stdout
    assert "chat template  present" in r.stdout


def test_info_gemma3(pagoda_bin, gemma_model):
    j = info_json(pagoda_bin, gemma_model)
    assert j["architecture"] == "gemma3"
    assert j["num_layers"] == 18 and j["num_kv_heads"] == 1 and j["head_dim"] == 256
    assert j["sliding_window"] == 512
    assert j["tokenizer"].startswith("llama")


def write_hf_folder(folder: Path, sharded: bool) -> dict:
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    hidden, inter, vocab, layers = 64, 128, 96, 2
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": vocab, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
              "torch_dtype": "bfloat16"}
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 5, "eos_token_id": [6, 7]}))
    tensors = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden)).astype(np.float16),
               "model.norm.weight": np.ones(hidden, dtype=np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.q_proj.weight"] = rng.standard_normal((hidden, hidden)).astype(np.float16)
        tensors[p + "self_attn.q_proj.bias"] = np.zeros(hidden, dtype=np.float32)
        tensors[p + "self_attn.k_proj.weight"] = rng.standard_normal((32, hidden)).astype(np.float16)
        tensors[p + "self_attn.v_proj.weight"] = rng.standard_normal((32, hidden)).astype(np.float16)
        tensors[p + "mlp.up_proj.weight"] = rng.standard_normal((inter, hidden)).astype(np.float32)
    if sharded:
        names = sorted(tensors)
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        weight_map = {}
        for fname, keys in shards.items():
            save_file({k: tensors[k] for k in keys}, str(folder / fname))
            weight_map.update({k: fname for k in keys})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    else:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0]['content'] }}"}))
    return {"config": config, "tensors": tensors}


@pytest.mark.parametrize("sharded", [False, True])
def test_info_hf_folder(pagoda_bin, tmp_path, sharded):
    made = write_hf_folder(tmp_path / "model", sharded)
    j = info_json(pagoda_bin, tmp_path / "model")
    c, tensors = made["config"], made["tensors"]
    assert j["format"] == "hf"
    assert j["architecture"] == "qwen2"
    assert j["num_layers"] == c["num_hidden_layers"]
    assert j["num_heads"] == 4 and j["num_kv_heads"] == 2 and j["head_dim"] == 16
    assert j["vocab_size"] == c["vocab_size"] and j["context_length"] == 256
    assert j["rope_theta"] == 1000000.0
    assert j["bos_token_id"] == 5 and j["eos_token_ids"] == [6, 7]
    assert j["parameters"] == sum(t.size for t in tensors.values())
    assert j["num_tensors"] == len(tensors)
    counts = Counter({np.float16: "f16", np.float32: "f32"}[t.dtype.type] for t in tensors.values())
    assert {k: v["tensors"] for k, v in j["tensor_types"].items()} == dict(counts)
    assert j["chat_template"] is True
    r = run_pagoda(pagoda_bin, "info", str(tmp_path / "model"))
    assert r.returncode == 0 and "qwen2" in r.stdout


def test_info_devices_lists_cpu(pagoda_bin):
    r = run_pagoda(pagoda_bin, "info", "--devices", "--json")
    assert r.returncode == 0, r.stderr
    backends = {b["backend"]: b for b in json.loads(r.stdout)}
    assert backends["cpu"]["compiled"] and backends["cpu"]["devices"]
    assert set(backends) == {"cpu", "xpu", "cuda"}


def test_info_missing_path(pagoda_bin, tmp_path):
    r = run_pagoda(pagoda_bin, "info", str(tmp_path / "nope.gguf"))
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "nope.gguf" in r.stderr
