"""The golden-model checks on the xpu (OpenCL) backend: the same tiny random-weight models and
real GGUF models as test_golden.py and test_real_models.py, run with --device xpu, against the same
Hugging Face transformers references (never against pagoda's own CPU output).

The tests skip, saying why, when this pagoda was built without the xpu backend or sees no OpenCL
device (CI installs PoCL so that they run). PoCL compiles the kernels slowly on first use; the
compiled program is cached (PAGODA_KERNEL_CACHE, default ~/.cache/pagoda/kernels).
"""
import json
import os

import numpy as np
import pytest

from pagoda_testing import run_pagoda
from test_golden import CASES, GOLDEN, LOGIT_TOLERANCE, check_tokens, expected, generate, logits

DEVICE = os.environ.get("PAGODA_XPU_DEVICE", "xpu")
REAL_LOGIT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def xpu(pagoda_bin):
    r = run_pagoda(pagoda_bin, "info", "--devices", "--json")
    assert r.returncode == 0, r.stderr
    backends = {b["backend"]: b for b in json.loads(r.stdout)}
    xpu = backends.get("xpu")
    if xpu is None or not xpu["compiled"]:
        pytest.skip("this pagoda was built without the xpu backend (-DPAGODA_XPU=ON)")
    if not xpu["devices"]:
        pytest.skip(f"no OpenCL device: {xpu['status']}")
    return ["--device", DEVICE]


@pytest.mark.parametrize("case", CASES)
def test_greedy_batched_and_chunked_on_xpu(pagoda_bin, xpu, case):
    exp = expected(case)
    prompts = [p["prompt_ids"] for p in exp["prompts"]]
    check_tokens(generate(pagoda_bin, GOLDEN / case, prompts, exp["max_new_tokens"], *xpu), exp)
    check_tokens(generate(pagoda_bin, GOLDEN / case, prompts, exp["max_new_tokens"], "--prefill-chunk", "7",
                          "--block-size", "4", *xpu), exp)


@pytest.mark.parametrize("case", CASES)
def test_prompt_logits_on_xpu(pagoda_bin, xpu, case):
    exp = expected(case)
    got = logits(pagoda_bin, GOLDEN / case, [p["prompt_ids"] for p in exp["prompts"]], "--prefill-chunk", "5", *xpu)
    for g, p in zip(got, exp["prompts"]):
        want = np.array(p["last_logits"], dtype=np.float64)
        assert g.shape == want.shape
        diff = np.abs(g - want).max()
        assert diff <= LOGIT_TOLERANCE, f"prompt of {len(p['prompt_ids'])} tokens: max |diff| {diff}"


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_real_model_logits_on_xpu(pagoda_bin, xpu, request, name):
    from test_real_models import MODELS, REFERENCE
    path = REFERENCE / f"{name}.json"
    if not path.exists():
        pytest.skip(f"no reference {path.name}")
    ref = json.loads(path.read_text())
    model = request.getfixturevalue(MODELS[name])
    args = ["logits", str(model), *xpu]
    for p in ref["prompts"]:
        args += ["--prompt-ids", ",".join(str(i) for i in p["prompt_ids"])]
    r = run_pagoda(pagoda_bin, *args, timeout=1800)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert len(results) == len(ref["prompts"])
    for got, p in zip(results, ref["prompts"]):
        lg = np.array(got["logits"], dtype=np.float64)
        ids = np.array(p["top_ids"])
        diff = np.abs(lg[ids] - np.array(p["top_logits"])).max()
        assert diff <= REAL_LOGIT_TOLERANCE, f"{p['text'][:40]!r}: max |diff| over the top logits {diff}"
        assert int(np.argmax(lg)) == p["top_ids"][0], p["text"][:40]
