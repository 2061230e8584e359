"""Batch invariance of the CPU integer (int8) matmul path on the real GGUF models.

The int8 kernels handle eight weight rows and one to four activation rows per call, and decode
attention groups query heads when the batch is large enough; none of that may change a row's
bits. A prompt's greedy continuation must therefore be the same alone and in the middle of a
batch of prompts of other lengths (which puts it at other positions of the kernels' row groups
and, in decode steps, among other sequences).
"""
import json

import pytest

from pagoda_testing import run_pagoda


def _generate(pagoda_bin, model, prompts, max_tokens):
    args = ["generate", str(model), "--temperature", "0", "--max-tokens", str(max_tokens), "--ignore-eos",
            "--cpu-matmul", "int8", "--json"]
    for p in prompts:
        args += ["--prompt-ids", ",".join(str(t) for t in p)]
    r = run_pagoda(pagoda_bin, *args, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == len(prompts)
    return [line["token_ids"] for line in lines]


@pytest.mark.parametrize("which", ["default_model", "gemma_model"])
def test_int8_greedy_output_is_the_same_alone_and_in_a_batch(request, pagoda_bin, which):
    model = request.getfixturevalue(which)
    probe = [(i * 37 + 11) % 900 + 100 for i in range(45)]
    others = [[(i * 53 + 7 * n) % 900 + 100 for i in range(3 + 11 * n)] for n in range(9)]
    alone = _generate(pagoda_bin, model, [probe], 20)[0]
    assert len(alone) == 20
    batch = others[:4] + [probe] + others[4:]
    together = _generate(pagoda_bin, model, batch, 20)
    assert together[4] == alone
