#!/usr/bin/env python3
"""pagoda vs llama.cpp (through llama-cpp-python) on the same GGUF files, same thread count.

For each model, rounds alternate the two engines (and which goes first) so that background load
on a shared machine hits both alike. Each round measures, for each engine, the prompt speed (one
evaluation of a -p token prompt of random ids) and the decode speed at batch 1 (-n evaluations of
one token each after that prompt).

pagoda runs as a subprocess: `pagoda bench latency MODEL -p P -n N -r 1 --json --matmul M
--kv-cache-dtype D` (its own warm-up run is not counted). D is f16 unless --kv-cache-dtype says
otherwise: llama.cpp's own default cache type, so both engines read and write the same bytes.
llama.cpp runs in this process: Llama(n_threads=T, n_threads_batch=T, n_batch=P, logits_all=False), one warm-up evaluation, then llm.eval(prompt)
timed and llm.eval([token]) N times timed, the KV cache cleared between rounds.

With --batch-requests R (default 32; 0 skips it), each round also measures pagoda's aggregate
decode: `pagoda bench throughput MODEL --num-prompts R --input-len I --output-len O` (I and O from
--batch-in and --batch-out, 128 each), whose output tokens/s over the whole run (prompts
included) is divided by pagoda's batch-1 decode rate over the same shape, `bench latency -p I -n O`,
measured next to it in the same round.

    python3 bench/llama_cpp_compare.py --pagoda build/release/tools/pagoda/pagoda \\
        --rounds 3 models/SmolLM2-135M-Instruct.Q4_1.gguf models/gemma-3-270m-Q4_K_M.gguf

Needs: pip install llama-cpp-python (builds llama.cpp from source; set CMAKE_ARGS="-DGGML_NATIVE=ON").
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time


def mean_sd(xs):
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def run_pagoda(binary, model, n_prompt, n_gen, matmul, kv):
    j = run_json([binary, "bench", "latency", model, "-p", str(n_prompt), "-n", str(n_gen), "-r", "1", "--json",
                  "--matmul", matmul, "--kv-cache-dtype", kv])
    return j["prompt_tokens_per_s"]["samples"][0], j["decode_tokens_per_s"]["samples"][0], j


def run_pagoda_batch(binary, model, requests, n_in, n_out, matmul, kv):
    """Output tokens/s of `requests` concurrent requests, and the batch-1 decode rate beside it."""
    j = run_json([binary, "bench", "throughput", model, "--num-prompts", str(requests), "--input-len", str(n_in),
                  "--output-len", str(n_out), "--cpu-matmul", matmul, "--kv-cache-dtype", kv, "--json"])
    _, tg, _ = run_pagoda(binary, model, n_in, n_out, matmul, kv)
    return j["output_tokens_per_s"], tg


class LlamaCpp:
    def __init__(self, model, n_prompt, n_gen, threads):
        from llama_cpp import Llama  # imported here so that --help works without it

        self.llm = Llama(model_path=model, n_ctx=n_prompt + n_gen + 16, n_threads=threads, n_threads_batch=threads,
                         n_batch=n_prompt, n_ubatch=n_prompt, logits_all=False, verbose=False)
        rng = random.Random(1234)
        vocab = self.llm.n_vocab()
        self.prompt = [rng.randrange(vocab) for _ in range(n_prompt)]
        self.decode = [rng.randrange(vocab) for _ in range(n_gen)]
        self._clear()
        self.llm.eval(self.prompt[:16])  # warm-up: touch the weights once
        self._clear()

    def _clear(self):
        self.llm.reset()
        ctx = self.llm._ctx
        for name in ("memory_clear", "kv_cache_clear"):
            fn = getattr(ctx, name, None)
            if fn is not None:
                try:
                    fn(True) if name == "memory_clear" else fn()
                except TypeError:
                    fn()
                return
        raise RuntimeError("llama-cpp-python: no way to clear the KV cache")

    def run(self):
        self._clear()
        t = time.perf_counter()
        self.llm.eval(self.prompt)
        pp = len(self.prompt) / (time.perf_counter() - t)
        t = time.perf_counter()
        for tok in self.decode:
            self.llm.eval([tok])
        tg = len(self.decode) / (time.perf_counter() - t)
        return pp, tg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--pagoda", default="build/release/tools/pagoda/pagoda")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--matmul", default="int8", choices=["int8", "float"], help="pagoda's CPU matmul mode")
    ap.add_argument("--kv-cache-dtype", default="f16", help="pagoda's KV cache type (llama.cpp's default is f16)")
    ap.add_argument("--batch-requests", type=int, default=32, help="concurrent requests of the aggregate test (0: skip)")
    ap.add_argument("--batch-in", type=int, default=128)
    ap.add_argument("--batch-out", type=int, default=128)
    ap.add_argument("--json", help="write all samples here")
    a = ap.parse_args()

    import llama_cpp

    results = {}
    loads = []
    for model in a.models:
        name = os.path.basename(model)
        print(f"== {name}", file=sys.stderr)
        llama = LlamaCpp(model, a.n_prompt, a.n_gen, a.threads)
        samples = {"pagoda": {"pp": [], "tg": []}, "llama.cpp": {"pp": [], "tg": []},
                   "pagoda batch": {"aggregate": [], "batch1": []}}
        for r in range(a.rounds):
            order = ["pagoda", "llama.cpp"] if r % 2 == 0 else ["llama.cpp", "pagoda"]
            for engine in order:
                loads.append(os.getloadavg()[0])
                if engine == "pagoda":
                    pp, tg, _ = run_pagoda(a.pagoda, model, a.n_prompt, a.n_gen, a.matmul, a.kv_cache_dtype)
                else:
                    pp, tg = llama.run()
                samples[engine]["pp"].append(pp)
                samples[engine]["tg"].append(tg)
                print(f"  round {r + 1} {engine:9s}: pp{a.n_prompt} {pp:8.1f} tok/s  tg{a.n_gen} {tg:7.1f} tok/s  "
                      f"(load {os.getloadavg()[0]:.2f})", file=sys.stderr)
            if a.batch_requests > 0:
                agg, one = run_pagoda_batch(a.pagoda, model, a.batch_requests, a.batch_in, a.batch_out, a.matmul,
                                            a.kv_cache_dtype)
                samples["pagoda batch"]["aggregate"].append(agg)
                samples["pagoda batch"]["batch1"].append(one)
                print(f"  round {r + 1} pagoda   : {a.batch_requests} requests {agg:7.1f} output tok/s, batch 1 "
                      f"{one:7.1f} tok/s: {agg / one:.2f}×", file=sys.stderr)
        del llama
        results[name] = samples

    print(f"\nllama-cpp-python {llama_cpp.__version__}, threads {a.threads}, pagoda matmul {a.matmul}, "
          f"pagoda KV cache {a.kv_cache_dtype}, "
          f"{a.rounds} rounds, load average during the runs {min(loads):.2f}..{max(loads):.2f} "
          f"(mean {statistics.fmean(loads):.2f})\n")
    print(f"| model | test | pagoda t/s | llama.cpp t/s | pagoda / llama.cpp |")
    print("|---|---|---:|---:|---:|")
    for name, s in results.items():
        for test, label in (("pp", f"pp{a.n_prompt}"), ("tg", f"tg{a.n_gen}")):
            pm, ps = mean_sd(s["pagoda"][test])
            lm, ls = mean_sd(s["llama.cpp"][test])
            print(f"| {name} | {label} | {pm:.1f} ± {ps:.1f} | {lm:.1f} ± {ls:.1f} | {pm / lm:.2f}× |")
    if a.batch_requests > 0:
        print(f"\n| model | {a.batch_requests} requests ({a.batch_in} in, {a.batch_out} out), output t/s | "
              f"batch-1 decode t/s (p{a.batch_in}, n{a.batch_out}) | ratio per round | median ratio |")
        print("|---|---:|---:|---|---:|")
        for name, s in results.items():
            agg, one = s["pagoda batch"]["aggregate"], s["pagoda batch"]["batch1"]
            ratios = [x / y for x, y in zip(agg, one)]
            am, asd = mean_sd(agg)
            om, osd = mean_sd(one)
            print(f"| {name} | {am:.1f} ± {asd:.1f} | {om:.1f} ± {osd:.1f} | "
                  f"{', '.join(f'{x:.2f}×' for x in ratios)} | {statistics.median(ratios):.2f}× |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "load_average": loads, "threads": a.threads, "matmul": a.matmul,
                       "kv_cache_dtype": a.kv_cache_dtype,
                       "llama_cpp_python": llama_cpp.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
