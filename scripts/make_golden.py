#!/usr/bin/env python3
"""Golden fixtures for pagoda's model tests, made with Hugging Face transformers (the reference).

For every case below this writes tests/data/golden/<case>/ with
  config.json, model.safetensors   a tiny random-weight checkpoint (HF's own save_pretrained, then
                                   expert tensors normalised to the per-expert names real
                                   checkpoints on the Hub use, whatever the transformers version)
  expected.json                    three prompts (token ids), the greedy continuation of each
                                   (transformers' generate, KV cache, no EOS stop) and the logits
                                   of each prompt's last position.

The weights are drawn wider than HF's default init so that greedy choices are well separated: at
every generated step the top-2 logit margin must be at least --min-margin, or the case is drawn
again with the next seed. Everything runs in float32 with eager attention on the CPU (no TF32).

Self-checks, each fatal for its case (a message says which, the other cases still run):
  - the rotary tables have the intended size (catches a transformers version that ignores a
    partial rotary factor);
  - the checkpoint read back from disk gives the same logits as the model in memory;
  - generation without a cache (every step recomputes the whole sequence) picks the same tokens
    as cached generation, for every rope type whose frequencies do not depend on the sequence
    length (dynamic NTK and longrope deliberately differ between the two; see the notes in CASES);
    if they disagree the uncached result is kept and a warning printed.

Usage:
  python3 scripts/make_golden.py [--out tests/data/golden] [--only CASE ...] [--list]
Needs torch, transformers (>= 4.51 for qwen3; older versions skip the cases they cannot build,
with a message), safetensors, numpy. No internet access is needed.
"""
import argparse
import copy
import json
import math
import shutil
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_NEW_TOKENS = 24
MAX_SEEDS = 60

# Shapes shared by every case (hidden 64, 4 heads of 16, 2 kv heads, 2 layers, fp32).
BASE = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=None,
    pad_token_id=0,
    use_cache=True,
)


def case(model_type, prompt_lens, rotary_dim, store_dtype="float32", sequence_dependent_rope=False, **overrides):
    cfg = dict(BASE)
    cfg.update(overrides)
    return dict(model_type=model_type, config=cfg, prompt_lens=prompt_lens, rotary_dim=rotary_dim,
                store_dtype=store_dtype, sequence_dependent_rope=sequence_dependent_rope)


def longrope_factors(n, seed):
    import random
    r = random.Random(seed)
    short = [round(1.0 + 0.5 * r.random(), 4) for _ in range(n)]
    long = [round(1.0 + 7.0 * r.random(), 4) for _ in range(n)]
    return short, long


CASES = {
    # Default rope, GQA.
    "llama": case("llama", [5, 12, 40], 16, rope_theta=10000.0),
    # bf16 weights on disk; the reference computes in float32 from the same (rounded) weights.
    "llama_bf16": case("llama", [6, 13, 40], 16, store_dtype="bfloat16", rope_theta=10000.0, vocab_size=320),
    # Biases on the q/k/v/o projections and on the MLP.
    "llama_bias": case("llama", [5, 12, 40], 16, rope_theta=10000.0, attention_bias=True, mlp_bias=True),
    "llama_linear": case("llama", [5, 12, 40], 16, num_key_value_heads=1, rope_theta=10000.0,
                         rope_scaling={"rope_type": "linear", "factor": 2.0}),
    # Dynamic NTK changes the frequencies once a sequence outgrows max_position_embeddings (32
    # here): prompts stay within 32 tokens and generation runs past it, where transformers
    # recomputes the frequencies for each new token at length position + 1 (earlier keys keep
    # their rotation in the cache).
    "llama_dynamic": case("llama", [6, 17, 30], 16, max_position_embeddings=32, rope_theta=10000.0,
                          sequence_dependent_rope=True, rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
    "llama3": case("llama", [5, 12, 40], 16, rope_theta=500000.0, vocab_size=384,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    # No original_max_position_embeddings in the dict: transformers versions disagree on what it
    # means for yarn (some derive the factor from it), so the case avoids it.
    "llama_yarn": case("llama", [5, 12, 40], 16, rope_theta=10000.0,
                       rope_scaling={"rope_type": "yarn", "factor": 4.0}),
    "mistral": case("mistral", [7, 15, 41], 16, sliding_window=16, rope_theta=10000.0),
    "qwen2": case("qwen2", [5, 12, 40], 16, tie_word_embeddings=True, use_sliding_window=False, rope_theta=10000.0),
    "qwen3": case("qwen3", [5, 12, 40], 32, head_dim=32, use_sliding_window=False, rope_theta=1000000.0,
                  vocab_size=320),
    "gemma": case("gemma", [5, 12, 40], 16, num_key_value_heads=1, tie_word_embeddings=True,
                  hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                  rope_theta=10000.0),
    "gemma2": case("gemma2", [5, 12, 40], 16, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
                   rms_norm_eps=1e-6, rope_theta=10000.0, sliding_window=16, query_pre_attn_scalar=24,
                   attn_logit_softcapping=10.0, final_logit_softcapping=15.0, num_hidden_layers=3,
                   layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "gemma3_text": case("gemma3_text", [5, 12, 40], 32, head_dim=32, num_key_value_heads=1, tie_word_embeddings=True,
                        hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=1000000.0,
                        rope_local_base_freq=10000.0, sliding_window=16, query_pre_attn_scalar=32,
                        num_hidden_layers=3, sliding_window_pattern=3,
                        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                        attn_logit_softcapping=None, final_logit_softcapping=None),
    # Longrope: the short factors apply while a sequence is within original_max_position_embeddings
    # (48), the long ones once it is longer (prompt 3 starts past it). No prompt crosses the
    # boundary while generating: transformers' Phi-3 then drops its KV cache to recompute every
    # token with the long factors, and in transformers 5.x that recomputation keeps only the newest
    # token, so its output there is not a reference (pagoda recomputes the whole sequence; a test
    # checks that against fresh forward passes). A partial rotary factor of 0.5 when the installed
    # Phi3Config supports it, and a sliding window.
    "phi3": case("phi3", [7, 20, 60], 8, max_position_embeddings=128, original_max_position_embeddings=48,
                 partial_rotary_factor=0.5, sequence_dependent_rope=True, rope_theta=10000.0, sliding_window=16),
    "mixtral": case("mixtral", [5, 12, 40], 16, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2,
                    sliding_window=None, router_jitter_noise=0.0, rope_theta=1000000.0),
    "qwen3_moe": case("qwen3_moe", [5, 12, 40], 16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                      norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], use_sliding_window=False,
                      rope_theta=1000000.0),
    # Without renormalised top-k weights, and layer 1 a dense MLP (mlp_only_layers).
    "qwen3_moe_dense1": case("qwen3_moe", [5, 12, 40], 16, num_experts=4, num_experts_per_tok=2,
                             moe_intermediate_size=64, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
                             use_sliding_window=False, rope_theta=1000000.0),
    "gpt_neox": case("gpt_neox", [5, 12, 40], 4, rotary_pct=0.25, rotary_emb_base=10000.0, use_parallel_residual=True,
                     hidden_act="gelu", layer_norm_eps=1e-5, attention_bias=True, num_key_value_heads=None,
                     head_dim=None, rms_norm_eps=None),
    "gpt_neox_sequential": case("gpt_neox", [5, 12, 40], 4, rotary_pct=0.25, rotary_emb_base=10000.0,
                                use_parallel_residual=False, hidden_act="gelu", layer_norm_eps=1e-5,
                                attention_bias=True, num_key_value_heads=None, head_dim=None, rms_norm_eps=None),
}


class CaseError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def build_config(transformers, name, spec, rope_fallback=False):
    kwargs = {k: v for k, v in spec["config"].items() if v is not None or k in ("eos_token_id", "sliding_window",
                                                                               "attn_logit_softcapping",
                                                                               "final_logit_softcapping")}
    model_type = spec["model_type"]
    if model_type == "phi3":
        rotary = spec["rotary_dim"] if not rope_fallback else kwargs["head_dim"]
        if rope_fallback:
            kwargs.pop("partial_rotary_factor", None)
        short, long = longrope_factors(rotary // 2, 1234)
        kwargs["rope_scaling"] = {"type": "longrope", "short_factor": short, "long_factor": long}
    if model_type == "gpt_neox":
        kwargs.pop("head_dim", None)
        kwargs.pop("num_key_value_heads", None)
        kwargs.pop("rms_norm_eps", None)
    if model_type in ("gpt_neox", "gemma", "gemma2", "gemma3_text", "phi3"):
        kwargs.pop("use_sliding_window", None)
    try:
        config = transformers.AutoConfig.for_model(model_type, **kwargs)
    except (KeyError, ValueError) as e:
        raise CaseError(f"transformers {transformers.__version__} cannot build a '{model_type}' config: {e}")
    config.eos_token_id = None
    return config


def expected_rotary_dim(spec, config):
    if spec["model_type"] == "phi3" and getattr(config, "partial_rotary_factor", 1.0) == 1.0:
        return spec["config"]["head_dim"]
    return spec["rotary_dim"]


def init_weights(torch, model, model_type, std_linear=0.25, std_embed=0.5, std_norm=0.2, std_bias=0.2):
    """Wider than HF's init (normal 0.02) so that logits spread and greedy steps are well separated."""
    offset_norm = model_type in ("gemma", "gemma2", "gemma3_text")  # these store w - 1 and compute (1 + w)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            leaf = pname.rsplit(".", 1)[-1]
            if p.ndim == 1:
                if "norm" in pname and leaf == "weight":
                    p.copy_(torch.randn_like(p) * std_norm + (0.0 if offset_norm else 1.0))
                else:
                    p.copy_(torch.randn_like(p) * std_bias)
            else:
                embed = any(s in pname for s in ("embed_tokens", "lm_head", "embed_in", "embed_out"))
                p.copy_(torch.randn_like(p) * (std_embed if embed else std_linear))


def round_to_store_dtype(torch, model, store_dtype):
    if store_dtype == "float32":
        return
    dt = getattr(torch, store_dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dt).to(torch.float32))


def inv_freq_sizes(model):
    sizes = {}
    for bname, buf in model.named_buffers():
        if bname.endswith("inv_freq"):
            sizes[bname] = int(buf.numel())
    return sizes


def margins_of(torch, logits_steps):
    out = []
    for step in logits_steps:
        top = torch.topk(step.float().reshape(-1), 2).values
        out.append(float(top[0] - top[1]))
    return out


def generate(torch, model, prompt, max_new_tokens, use_cache=True):
    """Greedy generation; returns (new ids, [logits per step])."""
    ids = torch.tensor([prompt], dtype=torch.long)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        do_sample=False,
        num_beams=1,
        eos_token_id=None,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
        use_cache=use_cache,
    )
    new = out.sequences[0, len(prompt):].tolist()
    if len(new) != max_new_tokens:
        raise CaseError(f"generate returned {len(new)} tokens, expected {max_new_tokens}")
    logits = [step[0].detach().clone() for step in out.logits]
    return new, logits


def prompt_logits(torch, model, prompt):
    with torch.no_grad():
        return model(torch.tensor([prompt], dtype=torch.long), use_cache=False).logits[0, -1].float()


def make_prompts(torch, vocab, lens, seed):
    g = torch.Generator().manual_seed(10_000 + seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lens]


def per_expert_names(state, mixtral):
    """Fused expert tensors (newer transformers) → the per-expert names of real checkpoints."""
    out = {k: t for k, t in state.items()
           if not (k.endswith(".experts.gate_up_proj") or k.endswith(".experts.down_proj"))}
    gate_name, up_name, down_name = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
    for key, t in state.items():
        if key.endswith(".experts.gate_up_proj"):
            prefix = key[: -len(".gate_up_proj")]  # model.layers.N.mlp.experts
            inter = t.shape[1] // 2  # (experts, 2 * intermediate, hidden): gate rows, then up rows
            for e in range(t.shape[0]):
                out[f"{prefix}.{e}.{gate_name}.weight"] = t[e, :inter].contiguous()
                out[f"{prefix}.{e}.{up_name}.weight"] = t[e, inter:].contiguous()
        elif key.endswith(".experts.down_proj"):
            prefix = key[: -len(".down_proj")]
            for e in range(t.shape[0]):
                out[f"{prefix}.{e}.{down_name}.weight"] = t[e].contiguous()
    return out


def mixtral_legacy_names(state):
    """Mixtral's Hub checkpoints name the MoE block block_sparse_moe; newer transformers say mlp."""
    out = {}
    for key, t in state.items():
        out[key.replace(".mlp.gate.", ".block_sparse_moe.gate.").replace(".mlp.experts.",
                                                                        ".block_sparse_moe.experts.")] = t
    return out


def rewrite_checkpoint(folder, model_type):
    """Rewrites model.safetensors with per-expert tensor names if this transformers fused them.
    The reload check afterwards proves that transformers reads the result as the same model."""
    from safetensors.torch import load_file, save_file
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1 or files[0].name != "model.safetensors":
        raise CaseError(f"expected one model.safetensors in {folder}, found {[f.name for f in files]}")
    state = load_file(str(files[0]))
    fused = any(k.endswith(".experts.gate_up_proj") or k.endswith(".experts.down_proj") for k in state)
    renamed = per_expert_names(state, model_type == "mixtral") if fused else dict(state)
    if model_type == "mixtral":
        renamed = mixtral_legacy_names(renamed)
    if set(renamed) != set(state):
        save_file({k: v.contiguous() for k, v in renamed.items()}, str(files[0]), metadata={"format": "pt"})
    return sorted(renamed)


def load_saved(transformers, torch, folder):
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager",
                                                     torch_dtype=torch.float32)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager", dtype=torch.float32)
    return model.to(torch.float32).eval()


def run_case(torch, transformers, name, spec, out_dir, min_margin, seeds):
    from transformers import AutoModelForCausalLM

    rope_fallback = False
    last_problem = None
    for attempt in range(seeds):
        seed = attempt
        try:
            config = build_config(transformers, name, spec, rope_fallback)
        except CaseError:
            if spec["model_type"] == "phi3" and not rope_fallback:
                # Phi3Config before partial rotary support rejects factors sized for it.
                log(f"  {name}: this Phi3Config rejects a partial rotary factor; using full rotary instead")
                rope_fallback = True
                config = build_config(transformers, name, spec, rope_fallback)
            else:
                raise
        torch.manual_seed(seed)
        try:
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        except (ValueError, KeyError, TypeError) as e:
            raise CaseError(f"cannot build the model: {e}")
        model = model.to(torch.float32).eval()
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            raise CaseError(f"attention implementation is {model.config._attn_implementation}, not eager")
        init_weights(torch, model, spec["model_type"])
        round_to_store_dtype(torch, model, spec["store_dtype"])
        if config.tie_word_embeddings:
            model.tie_weights()

        rotary_dim = expected_rotary_dim(spec, config)
        sizes = inv_freq_sizes(model)
        bad = {k: v for k, v in sizes.items() if v != rotary_dim // 2}
        if not sizes:
            raise CaseError("found no rotary inv_freq buffer to check")
        if bad:
            if spec["model_type"] == "phi3" and not rope_fallback:
                log(f"  {name}: this Phi3 ignores partial_rotary_factor ({bad}); using full rotary instead")
                rope_fallback = True
                continue
            raise CaseError(f"rotary tables of unexpected size (want {rotary_dim // 2}): {bad}")

        prompts = make_prompts(torch, config.vocab_size, spec["prompt_lens"], seed)
        boundary = spec["config"].get("original_max_position_embeddings")
        if spec["model_type"] == "phi3" and boundary:
            for prompt in prompts:
                if len(prompt) <= boundary < len(prompt) + MAX_NEW_TOKENS - 1:
                    raise CaseError(f"a prompt of {len(prompt)} tokens would cross the longrope boundary {boundary}")
        records = []
        for prompt in prompts:
            # A fresh copy per call: dynamic rope keeps state between calls in some versions.
            new, step_logits = generate(torch, copy.deepcopy(model), prompt, MAX_NEW_TOKENS, use_cache=True)
            source = "generate (KV cache)"
            if not spec["sequence_dependent_rope"]:
                # Without a cache every step recomputes the whole sequence under the attention mask:
                # the plain definition of the model. Both must agree; if this transformers' cache
                # path disagrees, the uncached result is the reference.
                new2, step_logits2 = generate(torch, copy.deepcopy(model), prompt, MAX_NEW_TOKENS, use_cache=False)
                if new2 != new:
                    log(f"  {name}: WARNING: cached and uncached generation disagree for a prompt of "
                        f"{len(prompt)} tokens; using the uncached one\n    cached   {new}\n    uncached {new2}")
                    new, step_logits, source = new2, step_logits2, "generate (no cache)"
            margins = margins_of(torch, step_logits)
            if min(margins) < min_margin:
                last_problem = f"seed {seed}: top-2 margin {min(margins):.2e} < {min_margin}"
                records = None
                break
            records.append(dict(prompt=prompt, new=new, logits=step_logits[0], margins=margins, source=source))
        if records is None:
            continue

        for r in records:
            direct = prompt_logits(torch, copy.deepcopy(model), r["prompt"])
            diff = float((direct - r["logits"].float()).abs().max())
            if diff > 1e-4:
                raise CaseError(f"prompt logits from generate and from a plain forward differ by {diff}")

        folder = out_dir / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        to_save = copy.deepcopy(model)
        if spec["store_dtype"] != "float32":
            to_save = to_save.to(getattr(torch, spec["store_dtype"]))
        to_save.generation_config.eos_token_id = None
        to_save.config.eos_token_id = None
        to_save.save_pretrained(str(folder), safe_serialization=True)
        for extra in folder.iterdir():
            if extra.name not in ("config.json", "model.safetensors", "generation_config.json"):
                raise CaseError(f"save_pretrained wrote an unexpected file {extra.name}")
        gen_cfg = folder / "generation_config.json"
        if gen_cfg.exists():
            gen_cfg.unlink()  # config.json alone describes the fixture
        keys = rewrite_checkpoint(folder, spec["model_type"])

        # The checkpoint on disk reproduces the reference.
        reloaded = load_saved(transformers, torch, folder)
        for r in records:
            again = prompt_logits(torch, reloaded, r["prompt"])
            diff = float((again - r["logits"].float()).abs().max())
            if diff > 1e-4:
                raise CaseError(f"the saved checkpoint gives different logits (max |diff| {diff})")

        size = sum(f.stat().st_size for f in folder.iterdir())
        if size > 1_000_000:
            raise CaseError(f"fixture is {size} bytes (> 1 MB)")

        expected = dict(
            case=name,
            model_type=spec["model_type"],
            transformers_version=transformers.__version__,
            torch_version=torch.__version__,
            seed=seed,
            store_dtype=spec["store_dtype"],
            rotary_dim=rotary_dim,
            max_new_tokens=MAX_NEW_TOKENS,
            min_margin=min(min(r["margins"]) for r in records),
            tensors=keys,
            prompts=[dict(prompt_ids=r["prompt"], generated_ids=r["new"], reference=r["source"],
                          last_logits=[float(x) for x in r["logits"].float().tolist()],
                          margins=[round(x, 6) for x in r["margins"]]) for r in records],
        )
        (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        log(f"  {name}: seed {seed}, min margin {expected['min_margin']:.3g}, {size} bytes")
        return
    raise CaseError(f"no seed out of {seeds} gave well-separated greedy steps ({last_problem})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "golden")
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--min-margin", type=float, default=1e-2)
    ap.add_argument("--seeds", type=int, default=MAX_SEEDS, help="seeds to try per case")
    args = ap.parse_args()
    if args.list:
        for n, s in CASES.items():
            print(f"{n:22} {s['model_type']}")
        return 0

    import torch
    import transformers
    torch.set_num_threads(max(1, min(8, torch.get_num_threads())))
    torch.backends.cuda.matmul.allow_tf32 = False
    transformers.logging.set_verbosity_error()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}")

    names = args.only or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown cases: {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = {}
    for name in names:
        log(f"{name} ...")
        try:
            with torch.no_grad():
                run_case(torch, transformers, name, CASES[name], args.out, args.min_margin, args.seeds)
        except CaseError as e:
            failed[name] = str(e)
            log(f"  {name}: FAILED: {e}")
        except Exception as e:  # keep going: one broken case should not hide the others
            failed[name] = f"{type(e).__name__}: {e}"
            log(f"  {name}: FAILED with an exception:")
            traceback.print_exc()
    log("")
    log(f"{len(names) - len(failed)} of {len(names)} cases written to {args.out}")
    for name, why in failed.items():
        log(f"  not written: {name}: {why.splitlines()[0]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
