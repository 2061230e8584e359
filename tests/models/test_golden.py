"""pagoda's forward pass against Hugging Face transformers on tiny random-weight models.

Every folder under tests/data/golden/ is one case made by scripts/make_golden.py (transformers,
float32, eager attention): config.json and model.safetensors of a 2-3 layer model of one
architecture and rope variant, and expected.json with three prompts, transformers' greedy
continuation of each (24 tokens, no EOS stop) and the logits after each prompt's last token.

For every case pagoda must produce the same greedy tokens (the script chose weights whose top-2
logits differ by at least 1e-2 at every step), one prompt at a time, all three batched together,
and batched with prompts fed in chunks (so prefill chunks and decodes share steps), and the same
logits within 1e-3.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from pagoda_testing import run_pagoda

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.json").exists())
LOGIT_TOLERANCE = 1e-3


def test_every_architecture_has_a_case():
    types = {json.loads((GOLDEN / c / "expected.json").read_text())["model_type"] for c in CASES}
    assert types >= {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "mixtral",
                     "qwen3_moe", "gpt_neox"}


def expected(case):
    return json.loads((GOLDEN / case / "expected.json").read_text())


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def generate(pagoda_bin, folder, prompts, max_tokens, *extra):
    args = ["generate", str(folder), "--max-tokens", str(max_tokens), "--temperature", "0", "--json", "--ignore-eos",
            *extra]
    for p in prompts:
        args += ["--prompt-ids", ids_arg(p)]
    r = run_pagoda(pagoda_bin, *args)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(prompts), r.stdout
    return [json.loads(line) for line in lines]


def logits(pagoda_bin, folder, prompts, *extra):
    args = ["logits", str(folder), *extra]
    for p in prompts:
        args += ["--prompt-ids", ids_arg(p)]
    r = run_pagoda(pagoda_bin, *args)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert len(results) == len(prompts)
    return [np.array(x["logits"], dtype=np.float64) for x in results]


def check_tokens(outputs, exp):
    for out, p in zip(outputs, exp["prompts"]):
        assert out["prompt_tokens"] == len(p["prompt_ids"])
        assert out["finish_reason"] == "length"
        assert out["completion_tokens"] == exp["max_new_tokens"]
        assert out["token_ids"] == p["generated_ids"], f"prompt of {len(p['prompt_ids'])} tokens"


@pytest.mark.parametrize("case", CASES)
def test_greedy_one_prompt_at_a_time(pagoda_bin, case):
    exp = expected(case)
    for p in exp["prompts"]:
        check_tokens(generate(pagoda_bin, GOLDEN / case, [p["prompt_ids"]], exp["max_new_tokens"]),
                     {**exp, "prompts": [p]})


@pytest.mark.parametrize("case", CASES)
def test_greedy_batched_and_chunked(pagoda_bin, case):
    exp = expected(case)
    prompts = [p["prompt_ids"] for p in exp["prompts"]]
    check_tokens(generate(pagoda_bin, GOLDEN / case, prompts, exp["max_new_tokens"]), exp)
    # Chunks of 7 with blocks of 4 tokens: prompts of different lengths are in prefill and decode
    # in the same steps, and sequences span many non-contiguous blocks.
    check_tokens(generate(pagoda_bin, GOLDEN / case, prompts, exp["max_new_tokens"], "--prefill-chunk", "7",
                          "--block-size", "4"), exp)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk", [0, 5])
def test_prompt_logits(pagoda_bin, case, chunk):
    exp = expected(case)
    got = logits(pagoda_bin, GOLDEN / case, [p["prompt_ids"] for p in exp["prompts"]], "--prefill-chunk", str(chunk))
    for g, p in zip(got, exp["prompts"]):
        want = np.array(p["last_logits"], dtype=np.float64)
        assert g.shape == want.shape
        diff = np.abs(g - want).max()
        assert diff <= LOGIT_TOLERANCE, f"prompt of {len(p['prompt_ids'])} tokens: max |diff| {diff}"


def test_longrope_switch_recomputes_the_sequence(pagoda_bin):
    """A Phi-3 sequence that grows past original_max_position_embeddings switches every token to the
    long factors, as transformers' Phi-3 does by dropping its cache at that point: each generated
    token must be the argmax of a fresh forward pass over the whole sequence so far."""
    folder = GOLDEN / "phi3"
    config = json.loads((folder / "config.json").read_text())
    boundary = config["original_max_position_embeddings"]
    prompt = expected("phi3")["prompts"][0]["prompt_ids"]
    new = boundary - len(prompt) + 6  # crosses the boundary five tokens before the end
    out = generate(pagoda_bin, folder, [prompt], new)[0]
    sequence = prompt + out["token_ids"]
    prefixes = [sequence[:n] for n in range(boundary - 2, len(sequence))]
    fresh = logits(pagoda_bin, folder, prefixes)
    for prefix, row in zip(prefixes, fresh):
        assert int(np.argmax(row)) == sequence[len(prefix)], f"after {len(prefix)} tokens"


# --- bad input: one-line errors, non-zero exit status ---------------------------------------


def one_line_error(r):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def copy_case(tmp_path, case="llama"):
    dst = tmp_path / case
    shutil.copytree(GOLDEN / case, dst)
    return dst


def test_token_id_outside_the_vocabulary(pagoda_bin):
    vocab = json.loads((GOLDEN / "llama" / "config.json").read_text())["vocab_size"]
    for bad in (vocab, -1):
        r = run_pagoda(pagoda_bin, "generate", str(GOLDEN / "llama"), "--prompt-ids", f"1,2,{bad}", "--max-tokens", "2",
                       "--temperature", "0")
        line = one_line_error(r)
        assert "outside the vocabulary" in line and str(bad) in line


def test_prompt_longer_than_the_context(pagoda_bin):
    context = json.loads((GOLDEN / "llama" / "config.json").read_text())["max_position_embeddings"]
    r = run_pagoda(pagoda_bin, "generate", str(GOLDEN / "llama"), "--prompt-ids", ids_arg([5] * (context + 1)),
                   "--max-tokens", "1", "--temperature", "0")
    line = one_line_error(r)
    assert "context" in line and str(context + 1) in line and str(context) in line
    # The context counts prompt and generated tokens (as vLLM's max_model_len): a prompt that fills
    # it leaves no room, and `generate` shortens --max-tokens to what fits.
    r = run_pagoda(pagoda_bin, "generate", str(GOLDEN / "llama"), "--prompt-ids", ids_arg([5] * context),
                   "--max-tokens", "1")
    assert "maximum context length" in one_line_error(r)
    out = generate(pagoda_bin, GOLDEN / "llama", [[5] * (context - 1)], 4)[0]
    assert out["completion_tokens"] == 1 and out["finish_reason"] == "length"


def test_unsupported_tensor_type(pagoda_bin, tmp_path):
    folder = copy_case(tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    tensors[name] = tensors[name].astype(np.float64)
    save_file(tensors, str(folder / "model.safetensors"))
    r = run_pagoda(pagoda_bin, "generate", str(folder), "--prompt-ids", "1,2,3", "--max-tokens", "1")
    line = one_line_error(r)
    assert name in line and "f64" in line


def test_integer_norm_weight(pagoda_bin, tmp_path):
    folder = copy_case(tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    name = "model.layers.1.input_layernorm.weight"
    tensors[name] = tensors[name].astype(np.int32)
    save_file(tensors, str(folder / "model.safetensors"))
    r = run_pagoda(pagoda_bin, "logits", str(folder), "--prompt-ids", "1,2,3")
    line = one_line_error(r)
    assert name in line and "i32" in line


def test_missing_and_misshapen_tensors(pagoda_bin, tmp_path):
    folder = copy_case(tmp_path)
    original = load_file(str(folder / "model.safetensors"))
    missing = dict(original)
    del missing["model.layers.1.mlp.down_proj.weight"]
    save_file(missing, str(folder / "model.safetensors"))
    line = one_line_error(run_pagoda(pagoda_bin, "logits", str(folder), "--prompt-ids", "1,2,3"))
    assert "missing tensor 'model.layers.1.mlp.down_proj.weight'" in line

    misshapen = dict(original)
    misshapen["model.layers.0.self_attn.k_proj.weight"] = original["model.layers.0.self_attn.k_proj.weight"][:-1]
    save_file(misshapen, str(folder / "model.safetensors"))
    line = one_line_error(run_pagoda(pagoda_bin, "logits", str(folder), "--prompt-ids", "1,2,3"))
    assert "model.layers.0.self_attn.k_proj.weight" in line and "shape" in line


def test_bad_prompt_ids_and_options(pagoda_bin):
    folder = str(GOLDEN / "llama")
    for args in (["--prompt-ids", "1,,2"], ["--prompt-ids", "1;2"], ["--prompt-ids", "99999999999"],
                 ["--prompt-ids", "1", "--top-p", "0"], ["--prompt-ids", "1", "--temperature", "-1"],
                 ["--prompt-ids", "1", "--max-tokens", "0"], ["--prompt", "hello"],
                 ["--prompt-ids", "1", "--device", "tpu"]):
        one_line_error(run_pagoda(pagoda_bin, "generate", folder, *args))


# --- other layouts of the same checkpoints --------------------------------------------------


def check_same_logits(pagoda_bin, folder, case):
    exp = expected(case)
    got = logits(pagoda_bin, folder, [p["prompt_ids"] for p in exp["prompts"]])
    for g, p in zip(got, exp["prompts"]):
        assert np.abs(g - np.array(p["last_logits"])).max() <= LOGIT_TOLERANCE


@pytest.mark.parametrize("case", ["mixtral", "qwen3_moe"])
def test_fused_expert_tensors(pagoda_bin, tmp_path, case):
    """Newer transformers save experts fused: mlp.experts.gate_up_proj (experts, 2 * inter, hidden)
    with the gate rows first, mlp.experts.down_proj (experts, hidden, inter) and mlp.gate."""
    folder = copy_case(tmp_path, case)
    tensors = load_file(str(folder / "model.safetensors"))
    block = "block_sparse_moe" if case == "mixtral" else "mlp"
    gate, up, down = ("w1", "w3", "w2") if case == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    layers = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    for layer in range(layers):
        prefix = f"model.layers.{layer}.{block}"
        experts = sorted({int(k.split(".")[5]) for k in tensors if k.startswith(f"{prefix}.experts.")})
        gate_up = np.stack([np.concatenate([tensors.pop(f"{prefix}.experts.{e}.{gate}.weight"),
                                            tensors.pop(f"{prefix}.experts.{e}.{up}.weight")]) for e in experts])
        down_all = np.stack([tensors.pop(f"{prefix}.experts.{e}.{down}.weight") for e in experts])
        tensors[f"model.layers.{layer}.mlp.gate.weight"] = tensors.pop(f"{prefix}.gate.weight")
        tensors[f"model.layers.{layer}.mlp.experts.gate_up_proj"] = gate_up
        tensors[f"model.layers.{layer}.mlp.experts.down_proj"] = down_all
    save_file(tensors, str(folder / "model.safetensors"))
    check_same_logits(pagoda_bin, folder, case)


@pytest.mark.parametrize("prefix", ["model.language_model.", "language_model.model."])
def test_gemma3_inside_a_multimodal_checkpoint(pagoda_bin, tmp_path, prefix):
    """Gemma3ForConditionalGeneration: the text model's config under text_config and its weights
    under language_model (two spellings across transformers versions)."""
    folder = copy_case(tmp_path, "gemma3_text")
    text = json.loads((folder / "config.json").read_text())
    outer = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "text_config": text,
             "tie_word_embeddings": True}
    (folder / "config.json").write_text(json.dumps(outer))
    tensors = load_file(str(folder / "model.safetensors"))
    renamed = {prefix + k[len("model."):]: v for k, v in tensors.items()}
    renamed["vision_tower.some.weight"] = np.zeros((2, 2), dtype=np.float32)  # ignored
    save_file(renamed, str(folder / "model.safetensors"))
    check_same_logits(pagoda_bin, folder, "gemma3_text")
