"""`pagoda serve --cpu-matmul`: the server takes the integer (int8) matmul path when asked, says
which path and kernels it uses at start, answers a greedy completion exactly as `pagoda generate`
does on the same path, and refuses an unknown value with a message that names the flag."""
import json

import pytest

from conftest import MODEL_NAME, start_server
from pagoda_testing import run_pagoda

PROMPT = "The capital of France is"


def test_serve_with_int8_matmul_answers_as_generate_does(pagoda_bin, default_model):
    openai = pytest.importorskip("openai", reason="pip install openai (tests/requirements.txt)")
    s = start_server(pagoda_bin, default_model, "--cpu-matmul", "int8")
    try:
        said = [line for line in s.startup if "CPU matmul" in line]
        assert len(said) == 1 and "CPU matmul over GGUF block weights: int8" in said[0], s.startup
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=0,
                                      extra_body={"ignore_eos": True})
        served = r.choices[0].text
    finally:
        s.stop()
    g = run_pagoda(pagoda_bin, "generate", str(default_model), "--prompt", PROMPT, "--max-tokens", "12",
                   "--temperature", "0", "--ignore-eos", "--cpu-matmul", "int8", "--json", timeout=300)
    assert g.returncode == 0, g.stderr
    assert served == json.loads(g.stdout.splitlines()[0])["text"]


def test_serve_refuses_an_unknown_cpu_matmul(pagoda_bin, default_model):
    r = run_pagoda(pagoda_bin, "serve", str(default_model), "--port", "0", "--cpu-matmul", "int4", timeout=120)
    assert r.returncode != 0
    assert "--cpu-matmul must be float or int8, got 'int4'" in r.stderr + r.stdout
