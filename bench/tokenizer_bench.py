#!/usr/bin/env python3
"""Single-threaded encoding speed: pagoda vs HF tokenizers, side by side on one machine.

Encodes the test corpus (tests/tokenizer/corpus.py, ~2,400 strings of many scripts, code and
whitespace) `--repeat` times with `pagoda tokenize MODEL --input-jsonl F --bench` (which times
encoding only, after loading) and with HF tokenizers (TOKENIZERS_PARALLELISM=false) one string at
a time and with encode_batch, on the same tokenizer: for a .gguf the one transformers converts
from it, else the tokenizer.json. Checks that both produce the same ids, then prints the times
and the ratios.

    python3 bench/tokenizer_bench.py --pagoda build/release/tools/pagoda/pagoda MODEL [MODEL ...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "tokenizer"))

import corpus as corpus_mod  # noqa: E402
import hf_reference  # noqa: E402


def hf_tokenizer(model: Path):
    from tokenizers import Tokenizer

    if model.suffix == ".gguf":
        return hf_reference.load_gguf_tokenizer(model).backend_tokenizer
    path = model / "tokenizer.json" if model.is_dir() else model
    return Tokenizer.from_file(str(path))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pagoda", required=True, help="pagoda binary (a release build)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()

    items = corpus_mod.corpus()
    texts = [corpus_mod.as_text(x) for x in items]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "corpus.jsonl"
        jsonl.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
        print(f"corpus: {len(texts)} strings, {nbytes} bytes, x{args.repeat} passes, one thread")
        for model_arg in args.models:
            model = Path(model_arg)
            tok = hf_tokenizer(model)
            got = subprocess.run([args.pagoda, "tokenize", str(model), "--input-jsonl", str(jsonl)],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
            want = [tok.encode(t).ids for t in texts]
            same = sum(json.loads(g) == w for g, w in zip(got, want))
            assert same == len(texts), f"{model}: ids differ on {len(texts) - same} strings"

            proc = subprocess.run([args.pagoda, "tokenize", str(model), "--input-jsonl", str(jsonl), "--bench",
                                   "--repeat", str(args.repeat)], capture_output=True, text=True, check=True)
            pagoda_s = json.loads(proc.stdout)["encode_seconds"]

            t0 = time.perf_counter()
            for _ in range(args.repeat):
                for t in texts:
                    tok.encode(t)
            hf_single = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                tok.encode_batch(texts)
            hf_batch = time.perf_counter() - t0
            mb = nbytes * args.repeat / 1e6
            print(f"{model.name}:")
            print(f"  pagoda               {pagoda_s:8.3f} s  {mb / pagoda_s:7.2f} MB/s")
            print(f"  HF encode (1 by 1)   {hf_single:8.3f} s  {mb / hf_single:7.2f} MB/s"
                  f"  -> pagoda is {hf_single / pagoda_s:.2f}x")
            print(f"  HF encode_batch      {hf_batch:8.3f} s  {mb / hf_batch:7.2f} MB/s"
                  f"  -> pagoda is {hf_batch / pagoda_s:.2f}x")


if __name__ == "__main__":
    main()
