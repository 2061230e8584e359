"""pagoda's GGUF path against the same transformers references as test_golden.py.

Each golden Hugging Face checkpoint is converted here to a float32 GGUF file with the `gguf`
package, following llama.cpp's converter (convert_hf_to_gguf.py): its tensor names, its metadata
keys, q/k rows permuted for the `llama` arch's adjacent-pair rotary, Gemma norm weights stored
as 1 + w, GPT-NeoX's qkv regrouped as [q | k | v], experts stacked into ffn_*_exps, llama3 scaling
as a rope_freqs tensor and Phi-3's longrope factors as rope_factors_long/short tensors. pagoda
must then give transformers' greedy tokens and logits from the GGUF file, as from the checkpoint.

Left out, because a GGUF file cannot express them: dynamic NTK scaling (llama_dynamic), Mistral's
sliding window (llama.cpp's llama arch has none) and dense layers inside a Qwen3-MoE
(qwen3_moe_dense1).
"""
import json
import math
from pathlib import Path

import gguf
import numpy as np
import pytest

from pagoda_testing import run_pagoda

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
CASES = ["llama", "llama_bf16", "llama_bias", "llama_linear", "llama3", "llama_yarn", "qwen2", "qwen3", "gemma",
         "gemma2", "gemma3_text", "phi3", "mixtral", "qwen3_moe", "gpt_neox", "gpt_neox_sequential"]
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
             "qwen3_moe": "qwen3moe", "gemma": "gemma", "gemma2": "gemma2", "gemma3_text": "gemma3", "phi3": "phi3",
             "gpt_neox": "gptneox"}


def permute(w, n_head, n_head_kv=None):
    """llama.cpp's LlamaModel.permute: rotate-half rows → adjacent pairs within each head."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_params(cfg):
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    if "full_attention" in rope:
        rope = rope["full_attention"]
    return rope


def llama3_factors(rope, base, dim):
    """llama.cpp's rope_freqs for llama3 scaling: the divisor of each frequency."""
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def tensor_name(hf, model_type):
    """The GGUF name of a Hugging Face tensor (None: handled elsewhere)."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight", "gpt_neox.embed_in.weight": "token_embd.weight",
             "gpt_neox.final_layer_norm.weight": "output_norm.weight",
             "gpt_neox.final_layer_norm.bias": "output_norm.bias", "embed_out.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    i = parts[2]
    rest = ".".join(parts[3:])
    sandwich = model_type in ("gemma2", "gemma3_text")
    table = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "post_attention_norm" if sandwich else "ffn_norm",
        "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
        "self_attn.qkv_proj": "attn_qkv", "mlp.gate_up_proj": "ffn_up",
        "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
        "block_sparse_moe.gate": "ffn_gate_inp", "mlp.gate": "ffn_gate_inp",
        "attention.query_key_value": "attn_qkv", "attention.dense": "attn_output",
        "mlp.dense_h_to_4h": "ffn_up", "mlp.dense_4h_to_h": "ffn_down",
    }
    stem, leaf = rest.rsplit(".", 1)
    if ".experts." in hf:
        return None
    return f"blk.{i}.{table[stem]}.{leaf}"


def load_tensors(path):
    """Tensors as float32 arrays, plus the names stored as bf16 (numpy has no bf16; the bits are
    widened exactly)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    tensors, bf16 = {}, set()
    for name, info in header.items():
        begin, end = info["data_offsets"]
        data = raw[8 + n + begin:8 + n + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(data, dtype=np.uint16).astype(np.uint32) << 16
            tensors[name] = bits.view(np.float32).reshape(info["shape"])
            bf16.add(name)
        else:
            tensors[name] = np.frombuffer(data, dtype={"F32": np.float32, "F16": np.float16}[info["dtype"]]).astype(
                np.float32).reshape(info["shape"])
    return tensors, bf16


def to_bf16_bits(t):
    return (np.ascontiguousarray(t, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def convert(case, out_path):
    folder = GOLDEN / case
    cfg = json.loads((folder / "config.json").read_text())
    mt = cfg["model_type"]
    arch = GGUF_ARCH[mt]
    tensors, bf16 = load_tensors(folder / "model.safetensors")
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // n_head
    rope = rope_params(cfg)
    theta = rope.get("rope_theta", cfg.get("rope_theta", cfg.get("rotary_emb_base", 10000.0)))
    partial = rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor", cfg.get("rotary_pct", 1.0)))
    rotary_dim = int(head_dim * partial)
    layers = cfg["num_hidden_layers"]

    w = gguf.GGUFWriter(str(out_path), arch)
    k = lambda s: f"{arch}.{s}"  # noqa: E731
    w.add_uint32(k("block_count"), layers)
    w.add_uint32(k("context_length"), cfg["max_position_embeddings"])
    w.add_uint32(k("embedding_length"), hidden)
    w.add_uint32(k("feed_forward_length"), cfg["intermediate_size"])
    w.add_uint32(k("attention.head_count"), n_head)
    w.add_uint32(k("attention.head_count_kv"), n_kv)
    w.add_uint32(k("vocab_size"), cfg["vocab_size"])
    w.add_float32(k("rope.freq_base"), theta)
    w.add_uint32(k("rope.dimension_count"), rotary_dim)
    if head_dim != hidden // n_head:
        w.add_uint32(k("attention.key_length"), head_dim)
        w.add_uint32(k("attention.value_length"), head_dim)
    if mt == "gpt_neox":
        w.add_float32(k("attention.layer_norm_epsilon"), cfg["layer_norm_eps"])
        w.add_bool(k("use_parallel_residual"), cfg["use_parallel_residual"])
    else:
        w.add_float32(k("attention.layer_norm_rms_epsilon"), cfg["rms_norm_eps"])
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "linear":
        w.add_string(k("rope.scaling.type"), "linear")
        w.add_float32(k("rope.scaling.factor"), rope["factor"])
    elif kind == "yarn":
        w.add_string(k("rope.scaling.type"), "yarn")
        w.add_float32(k("rope.scaling.factor"), rope["factor"])
        w.add_uint32(k("rope.scaling.original_context_length"),
                     rope.get("original_max_position_embeddings", cfg["max_position_embeddings"]))
    elif kind == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_factors(rope, theta, rotary_dim))
    elif kind == "longrope":
        w.add_uint32(k("rope.scaling.original_context_length"), cfg["original_max_position_embeddings"])
        w.add_tensor("rope_factors_long.weight", np.array(rope["long_factor"], dtype=np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(rope["short_factor"], dtype=np.float32))
    if cfg.get("sliding_window") and mt in ("gemma2", "gemma3_text", "phi3"):
        w.add_uint32(k("attention.sliding_window"), cfg["sliding_window"])
    if mt == "gemma2":
        w.add_float32(k("attn_logit_softcapping"), cfg["attn_logit_softcapping"])
        w.add_float32(k("final_logit_softcapping"), cfg["final_logit_softcapping"])
        w.add_float32(k("attention.scale"), cfg["query_pre_attn_scalar"] ** -0.5)
    if mt == "gemma3_text":
        w.add_uint32(k("attention.sliding_window_pattern"), cfg["sliding_window_pattern"])
        w.add_float32(k("rope.freq_base_swa"), cfg["rope_parameters"]["sliding_attention"]["rope_theta"])
    if mt in ("mixtral", "qwen3_moe"):
        experts = cfg.get("num_local_experts", cfg.get("num_experts"))
        w.add_uint32(k("expert_count"), experts)
        w.add_uint32(k("expert_used_count"), cfg["num_experts_per_tok"])
        if mt == "qwen3_moe":
            w.add_uint32(k("expert_feed_forward_length"), cfg["moe_intermediate_size"])
            w.add_bool(k("expert_weights_norm"), cfg["norm_topk_prob"])
        for layer in range(layers):
            block = f"model.layers.{layer}.block_sparse_moe" if mt == "mixtral" else f"model.layers.{layer}.mlp"
            names = ("w1", "w3", "w2") if mt == "mixtral" else ("gate_proj", "up_proj", "down_proj")
            for name, gguf_name in zip(names, ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")):
                stacked = np.stack([tensors[f"{block}.experts.{e}.{name}.weight"] for e in range(experts)])
                w.add_tensor(f"blk.{layer}.{gguf_name}.weight", stacked)

    for hf, t in tensors.items():
        name = tensor_name(hf, mt)
        if name is None:
            continue
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            t = permute(t, n_head, n_head if ".attn_q." in name else n_kv)
        if mt in ("gemma", "gemma2", "gemma3_text") and name.endswith("norm.weight"):
            t = t + 1.0  # llama.cpp stores Gemma's (1 + w)
        if mt == "gpt_neox" and ".attn_qkv." in name:
            t = t.reshape(n_head, 3, head_dim, *t.shape[1:])
            t = np.concatenate([t[:, j].reshape(-1, *t.shape[3:]) for j in range(3)], axis=0)
        if hf in bf16 and t.ndim == 2:
            # Matrices stay bf16 (exact: the values are bf16); vectors become f32 as llama.cpp does.
            w.add_tensor(name, to_bf16_bits(t), raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path


@pytest.mark.parametrize("case", CASES)
def test_gguf_conversion_matches_transformers(pagoda_bin, tmp_path, case):
    path = convert(case, tmp_path / f"{case}.gguf")
    exp = json.loads((GOLDEN / case / "expected.json").read_text())

    args = ["logits", str(path)]
    for p in exp["prompts"]:
        args += ["--prompt-ids", ",".join(map(str, p["prompt_ids"]))]
    r = run_pagoda(pagoda_bin, *args)
    assert r.returncode == 0, r.stderr
    for got, p in zip(json.loads(r.stdout)["results"], exp["prompts"]):
        diff = np.abs(np.array(got["logits"]) - np.array(p["last_logits"])).max()
        assert diff <= 1e-3, f"prompt of {len(p['prompt_ids'])} tokens: max |diff| {diff}"

    args = ["generate", str(path), "--max-tokens", str(exp["max_new_tokens"]), "--temperature", "0", "--json",
            "--ignore-eos", "--prefill-chunk", "9"]
    for p in exp["prompts"]:
        args += ["--prompt-ids", ",".join(map(str, p["prompt_ids"]))]
    r = run_pagoda(pagoda_bin, *args)
    assert r.returncode == 0, r.stderr
    for line, p in zip(r.stdout.splitlines(), exp["prompts"]):
        assert json.loads(line)["token_ids"] == p["generated_ids"]


def test_gguf_config_reflects_the_conversion(pagoda_bin, tmp_path):
    path = convert("llama", tmp_path / "llama.gguf")
    r = run_pagoda(pagoda_bin, "config", str(path), "--json")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["architecture"] == "llama" and cfg["rope"]["style"] == "gptj" and cfg["num_layers"] == 2
