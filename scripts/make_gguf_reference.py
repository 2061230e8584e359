#!/usr/bin/env python3
"""Reference logits for a real GGUF model, made by Hugging Face transformers loading the same file.

transformers dequantizes every GGUF tensor to float32 (with the gguf package) and runs its own
implementation of the architecture (eager attention, float32, on the CPU unless --device says
otherwise), so the result is an independent reference for pagoda's forward pass over the
quantized weights. For each prompt this records the token ids, the top-K (id, logit) pairs of the
last position, and for the chat prompt (the first text prompt if the model has no chat template)
also the greedy continuation with the top-2 logit margin of
every step (a test compares tokens only up to the first step whose margin is too small to be
decided by quantization-level differences).

Usage (the model path is the GGUF file; the output stays well under 1 MB):
  python3 scripts/make_gguf_reference.py MODELS/SmolLM2-135M-Instruct.Q4_1.gguf \
      --out tests/data/gguf_reference/smollm2.json
  python3 scripts/make_gguf_reference.py MODELS/gemma-3-270m-Q4_K_M.gguf \
      --out tests/data/gguf_reference/gemma3.json          (optional second model)
Needs torch, transformers, accelerate (transformers' GGUF loader requires it), gguf, numpy. No internet access is needed.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

TEXT_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "1, 2, 3, 4, 5, 6,",
]
CHAT_QUESTION = "What is the capital of France?"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_metadata_string(path: Path, key: str):
    import gguf
    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get(key)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def gguf_has_tensor(path: Path, name: str) -> bool:
    import gguf
    reader = gguf.GGUFReader(str(path))
    return any(t.name == name for t in reader.tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", type=Path, help="the .gguf model file")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--top", type=int, default=100, help="logits kept per prompt (largest first)")
    ap.add_argument("--new-tokens", type=int, default=48, help="greedy tokens generated for the chat prompt")
    ap.add_argument("--device", default="cpu", help="torch device (cpu keeps float32 exact; no TF32)")
    args = ap.parse_args()

    import importlib.util
    for needed in ("torch", "transformers", "accelerate", "gguf"):
        if importlib.util.find_spec(needed) is None:
            print(f"this script needs the Python package '{needed}' (transformers loads GGUF files only with "
                  "accelerate and gguf installed)", file=sys.stderr)
            return 2
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    transformers.logging.set_verbosity_error()
    path = args.gguf.resolve()
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    folder, name = str(path.parent), path.name
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; loading {path}", flush=True)

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32,
                                                     attn_implementation="eager")
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                     attn_implementation="eager")
    model = model.to(torch.float32).to(args.device).eval()
    notes = []

    # A GGUF without output.weight shares the embedding with the output projection (llama.cpp loads
    # it so); make sure transformers did the same.
    if not gguf_has_tensor(path, "output.weight"):
        emb = model.get_input_embeddings().weight
        out = model.get_output_embeddings().weight
        if emb.data_ptr() != out.data_ptr() and not torch.equal(emb, out):
            model.get_output_embeddings().weight = emb
            notes.append("output.weight is absent: tied the output projection to token_embd")

    prompts = [dict(kind="text", text=t, ids=tokenizer(t)["input_ids"]) for t in TEXT_PROMPTS]
    template = tokenizer.chat_template or gguf_metadata_string(path, "tokenizer.chat_template")
    if template is not None:
        chat_text = tokenizer.apply_chat_template([{"role": "user", "content": CHAT_QUESTION}],
                                                  chat_template=template, tokenize=False, add_generation_prompt=True)
        chat_ids = tokenizer(chat_text, add_special_tokens=False)["input_ids"]
        prompts.append(dict(kind="chat", text=chat_text, question=CHAT_QUESTION, ids=chat_ids))
    else:
        notes.append("the model has no chat template: the greedy continuation is of the first text prompt")
    greedy_index = len(prompts) - 1 if template is not None else 0

    eos = model.generation_config.eos_token_id
    results = []
    for index, p in enumerate(prompts):
        ids = torch.tensor([p["ids"]], dtype=torch.long, device=args.device)
        with torch.no_grad():
            logits = model(ids, use_cache=False).logits[0, -1].float().cpu()
        top = torch.topk(logits, args.top)
        entry = dict(kind=p["kind"], text=p["text"], prompt_ids=p["ids"],
                     top_ids=[int(i) for i in top.indices], top_logits=[float(v) for v in top.values],
                     logit_mean=float(logits.mean()), logit_std=float(logits.std()))
        if p["kind"] == "chat":
            entry["question"] = p["question"]
        if index == greedy_index:
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                                     do_sample=False, num_beams=1, output_logits=True, return_dict_in_generate=True,
                                     pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
            new = out.sequences[0, ids.shape[1]:].tolist()
            margins = []
            for step in out.logits:
                t2 = torch.topk(step[0].float(), 2).values
                margins.append(round(float(t2[0] - t2[1]), 5))
            entry["greedy_ids"] = new
            entry["greedy_margins"] = margins[:len(new)]
            entry["greedy_text"] = tokenizer.decode(new, skip_special_tokens=True)
            print(f"greedy continuation: {entry['greedy_text']!r}", flush=True)
        results.append(entry)

    doc = dict(
        model_file=name,
        model_sha256=sha256_of(path),
        model_bytes=path.stat().st_size,
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
        eos_token_id=eos,
        vocab_size=int(model.config.vocab_size),
        notes=notes,
        prompts=results,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes, {len(results)} prompts)")
    if size > 1_000_000:
        print("warning: the file is over 1 MB; lower --top", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
