"""pagoda's ModelConfig against Hugging Face transformers, the reference for every default.

Each config.json (the fixtures in tests/data/hf_configs and variants written here) goes through
`pagoda config DIR --json` and through transformers' own config class; the values the forward pass
uses are derived from the transformers object the way its modeling_<arch>.py derives them, and must
match what pagoda printed.
"""
import copy
import json
import math
import subprocess
import types
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
try:
    from transformers import AutoConfig, GenerationConfig
    import transformers.modeling_rope_utils as rope_utils
except ImportError as e:  # not installed, or a broken optional dependency (torch) it tried to load
    pytest.skip(f"transformers cannot be imported ({e}); pip install -r tests/requirements.txt",
                allow_module_level=True)

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "hf_configs"


# transformers' rope init functions compute the attention factor next to the frequencies with a few
# torch calls; without torch installed they run on this numpy stand-in.
class _Array(np.ndarray):
    def to(self, device=None, dtype=None):
        return self if dtype is None else self.astype(dtype).view(_Array)

    def float(self):
        return self.astype(np.float32).view(_Array)


def _wrap(a):
    return np.asarray(a).view(_Array)


if not hasattr(rope_utils, "torch"):
    rope_utils.torch = types.SimpleNamespace(
        int64=np.int64, float=np.float32, float32=np.float32, Tensor=_Array,
        arange=lambda *a, dtype=None, device=None: _wrap(np.arange(*a, dtype=dtype)),
        tensor=lambda x, dtype=None, device=None: _wrap(np.array(x, dtype=dtype)),
        clamp=lambda x, lo, hi: _wrap(np.clip(x, lo, hi)),
        where=lambda c, a, b: _wrap(np.where(c, a, b)),
        maximum=lambda a, b: _wrap(np.maximum(a, b)),
    )

ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh"}


def pagoda_config(pagoda_bin: Path, folder: Path) -> dict:
    r = subprocess.run([str(pagoda_bin), "config", str(folder), "--json"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def expected_rope(text, rp: dict, head_dim: int) -> dict:
    rope_type = rp.get("rope_type", "default")
    out = {"type": rope_type, "theta": rp["rope_theta"],
           "rotary_dim": int(head_dim * rp.get("partial_rotary_factor", 1.0))}
    if rope_type in ("linear", "dynamic", "llama3", "yarn"):
        out["factor"] = rp["factor"]
    if rope_type in ("llama3", "yarn", "longrope"):
        out["original_max_position_embeddings"] = rp["original_max_position_embeddings"]
    if rope_type == "llama3":
        out["low_freq_factor"] = rp["low_freq_factor"]
        out["high_freq_factor"] = rp["high_freq_factor"]
    if rope_type == "yarn":
        out["beta_fast"] = rp.get("beta_fast") or 32
        out["beta_slow"] = rp.get("beta_slow") or 1
    if rope_type == "longrope":
        out["long_factor"] = rp["long_factor"]
        out["short_factor"] = rp["short_factor"]
    if rope_type in ("yarn", "longrope"):
        # The rope init function reads the flat rope_parameters; give it a view of this one.
        view = copy.copy(text)
        view.rope_parameters = rp
        view.standardize_rope_params = lambda: None
        _, attention_factor = rope_utils.ROPE_INIT_FUNCTIONS[rope_type](view, None)
        out["attention_factor"] = attention_factor
    return out


def expected_config(folder: Path) -> dict:
    top = AutoConfig.from_pretrained(folder)
    text = top.get_text_config()
    mt = text.model_type
    heads = text.num_attention_heads
    if mt == "gpt_neox":
        head_dim, kv_heads = text.hidden_size // heads, heads
    else:
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = text.num_key_value_heads
    n = text.num_hidden_layers

    if mt == "gemma3_text":
        rope = expected_rope(text, text.rope_parameters["full_attention"], head_dim)
        rope_local = expected_rope(text, text.rope_parameters["sliding_attention"], head_dim)
    else:
        rope = expected_rope(text, text.rope_parameters, head_dim)
        rope_local = None

    # Per-layer windows as each modeling file picks them.
    window = getattr(text, "sliding_window", None) or 0
    if mt in ("qwen2", "qwen3", "gemma2", "gemma3_text"):
        windows = [window if t == "sliding_attention" else 0 for t in text.layer_types]
    elif mt in ("mistral", "mixtral", "phi3", "qwen3_moe"):
        windows = [window] * n
    else:
        windows = [0] * n

    if mt == "qwen3_moe":
        experts = text.num_experts
        moe_layers = [(i not in text.mlp_only_layers) and experts > 0 and (i + 1) % text.decoder_sparse_step == 0
                      for i in range(n)]
        moe = {"num_experts": experts, "num_experts_per_tok": text.num_experts_per_tok,
               "expert_intermediate_size": text.moe_intermediate_size, "norm_topk_prob": text.norm_topk_prob}
    elif mt == "mixtral":
        moe_layers = [True] * n
        moe = {"num_experts": text.num_local_experts, "num_experts_per_tok": text.num_experts_per_tok,
               "expert_intermediate_size": text.intermediate_size, "norm_topk_prob": True}
    else:
        moe_layers = [False] * n
        moe = {"num_experts": 0}

    act = text.hidden_activation if mt in ("gemma2", "gemma3_text") else text.hidden_act
    if mt in ("gemma2", "gemma3_text"):
        scale = text.query_pre_attn_scalar ** -0.5
    else:
        scale = head_dim ** -0.5

    gen = None
    if (folder / "generation_config.json").exists():
        gen = GenerationConfig.from_pretrained(folder)

    def token(key):
        if gen is not None and getattr(gen, key, None) is not None:
            return getattr(gen, key)
        for cfg in (top, text):
            v = getattr(cfg, key, None)
            if v is not None:
                return v
        return None

    eos = token("eos_token_id")
    eos = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])
    return {
        "vocab_size": text.vocab_size, "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size, "num_layers": n, "num_heads": heads,
        "num_kv_heads": kv_heads, "head_dim": head_dim,
        "max_position_embeddings": text.max_position_embeddings,
        "norm_eps": text.layer_norm_eps if mt == "gpt_neox" else text.rms_norm_eps,
        "activation": ACTIVATIONS[act],
        "tie_word_embeddings": top.tie_word_embeddings if top is not text else text.tie_word_embeddings,
        "rope": rope, "rope_local": rope_local,
        "layer_sliding_window": windows,
        "layer_local_rope": [t == "sliding_attention" for t in text.layer_types] if mt == "gemma3_text" else [False] * n,
        "layer_moe": moe_layers, "moe": moe,
        "attention_scale": scale,
        "attn_logit_softcap": getattr(text, "attn_logit_softcapping", None) or 0.0,
        "final_logit_softcap": getattr(text, "final_logit_softcapping", None) or 0.0,
        "embedding_scale": math.sqrt(text.hidden_size) if mt.startswith("gemma") else 1.0,
        "parallel_residual": bool(getattr(text, "use_parallel_residual", False)) if mt == "gpt_neox" else False,
        "bos_token_id": token("bos_token_id"),
        "eos_token_ids": list(dict.fromkeys(eos)),
    }


def assert_matches(actual, expected, path="config"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for k, v in expected.items():
            assert k in actual, f"{path}.{k} missing from pagoda's output"
            assert_matches(actual[k], v, f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_matches(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) or isinstance(actual, float):
        assert actual == pytest.approx(expected, rel=1e-12), f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def fixture_dirs():
    return sorted(p for p in FIXTURES.iterdir() if (p / "config.json").exists())


@pytest.mark.parametrize("folder", fixture_dirs(), ids=lambda p: p.name)
def test_fixture_matches_transformers(pagoda_bin, folder):
    assert_matches(pagoda_config(pagoda_bin, folder), expected_config(folder))


def _sizes(**extra):
    base = {"vocab_size": 300000, "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 12,
            "num_attention_heads": 32}
    base.update(extra)
    return base


ARCHS = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "mixtral", "qwen3_moe",
         "gpt_neox"]

VARIANTS = {f"defaults-{mt}": {"model_type": mt, **_sizes()} for mt in ARCHS}
VARIANTS.update({
    "llama-linear": {"model_type": "llama", **_sizes(rope_scaling={"type": "linear", "factor": 4.0})},
    "llama-dynamic": {"model_type": "llama", **_sizes(rope_scaling={"type": "dynamic", "factor": 2.0})},
    "llama-yarn": {"model_type": "llama", **_sizes(max_position_embeddings=131072, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})},
    "llama-yarn-mscale": {"model_type": "llama", **_sizes(max_position_embeddings=16384, rope_scaling={
        "rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 1.0,
        "mscale_all_dim": 0.707, "beta_fast": 16, "beta_slow": 2})},
    "llama-yarn-attention-factor": {"model_type": "llama", **_sizes(rope_scaling={
        "rope_type": "yarn", "factor": 2.0, "attention_factor": 1.25})},
    "llama-llama3": {"model_type": "llama", **_sizes(max_position_embeddings=131072, rope_theta=500000.0,
                                                      rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                                    "original_max_position_embeddings": 8192})},
    "llama-v5-rope-parameters": {"model_type": "llama", **_sizes(rope_parameters={
        "rope_type": "linear", "factor": 2.0, "rope_theta": 50000.0})},
    "llama-head-dim": {"model_type": "llama", **_sizes(head_dim=128, num_key_value_heads=4)},
    "mistral-null-window": {"model_type": "mistral", **_sizes(sliding_window=None)},
    "qwen2-sliding": {"model_type": "qwen2", **_sizes(use_sliding_window=True, sliding_window=4096,
                                                       max_window_layers=9, num_key_value_heads=4)},
    "qwen2-yarn": {"model_type": "qwen2", **_sizes(num_key_value_heads=8, rope_theta=1000000.0,
                                                    rope_scaling={"type": "yarn", "factor": 4.0,
                                                                  "original_max_position_embeddings": 32768})},
    "qwen3-layer-types": {"model_type": "qwen3", **_sizes(use_sliding_window=True, sliding_window=256,
                                                           layer_types=["sliding_attention", "full_attention"] * 6)},
    "gemma2-no-caps": {"model_type": "gemma2", **_sizes(attn_logit_softcapping=None, final_logit_softcapping=None,
                                                         query_pre_attn_scalar=144, sliding_window=None)},
    "gemma3-pattern": {"model_type": "gemma3_text", **_sizes(sliding_window_pattern=4, sliding_window=128,
                                                              rope_local_base_freq=20000.0,
                                                              rope_scaling={"rope_type": "linear", "factor": 8.0})},
    "gemma3-nested-defaults": {"model_type": "gemma3", "text_config": {"num_hidden_layers": 8}},
    "phi3-longrope": {"model_type": "phi3", **_sizes(max_position_embeddings=131072,
                                                      original_max_position_embeddings=4096,
                                                      rope_scaling={"type": "longrope", "long_factor": [2.0] * 16,
                                                                       "short_factor": [1.0] * 16})},
    "phi3-partial": {"model_type": "phi3", **_sizes(partial_rotary_factor=0.5)},
    "mixtral-num-experts": {"model_type": "mixtral", **_sizes(num_local_experts=4, num_experts_per_tok=1,
                                                              sliding_window=4096)},
    "qwen3_moe-sparse-step": {"model_type": "qwen3_moe", **_sizes(num_experts=16, num_experts_per_tok=4,
                                                                  decoder_sparse_step=2, mlp_only_layers=[3, 7],
                                                                  norm_topk_prob=True, head_dim=64)},
    "gpt_neox-rope": {"model_type": "gpt_neox", **_sizes(rotary_pct=0.5, rotary_emb_base=20000,
                                                         use_parallel_residual=False, layer_norm_eps=1e-6)},
})


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_matches_transformers(pagoda_bin, tmp_path, name):
    (tmp_path / "config.json").write_text(json.dumps(VARIANTS[name]))
    assert_matches(pagoda_config(pagoda_bin, tmp_path), expected_config(tmp_path))


# Configs transformers itself refuses; pagoda must refuse them too (with one line naming the file).
REJECTED = {
    "llama3-missing-keys": {"model_type": "llama", **_sizes(rope_scaling={"rope_type": "llama3", "factor": 8.0})},
    "linear-without-factor": {"model_type": "llama", **_sizes(rope_scaling={"rope_type": "linear"})},
    "phi3-dynamic": {"model_type": "phi3", **_sizes(rope_scaling={"type": "dynamic", "factor": 2.0})},
    "heads-as-string": {"model_type": "qwen2", **_sizes(num_attention_heads="32")},
    "window-as-float": {"model_type": "mistral", **_sizes(sliding_window=4096.5)},
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_by_both(pagoda_bin, tmp_path, name):
    (tmp_path / "config.json").write_text(json.dumps(REJECTED[name]))
    with pytest.raises(Exception):
        AutoConfig.from_pretrained(tmp_path)
    r = subprocess.run([str(pagoda_bin), "config", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert str(tmp_path / "config.json") in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
