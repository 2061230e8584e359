"""`--chat-template FILE` replaces the model's chat template for `pagoda generate`."""
import json

import jinja2

from pagoda_testing import run_pagoda

TEMPLATE = ("{% for m in messages %}<<{{ m.role }}>> {{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<<assistant>>{% endif %}")


def test_override_renders_the_given_template(pagoda_bin, default_model, tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text(TEMPLATE)
    prompt = "Name a colour."
    rendered = jinja2.Environment().from_string(TEMPLATE).render(
        messages=[{"role": "user", "content": prompt}], add_generation_prompt=True)
    r = run_pagoda(pagoda_bin, "tokenize", str(default_model), rendered, "--no-special", "--json")
    assert r.returncode == 0, r.stderr
    expected_ids = json.loads(r.stdout)["ids"]
    r = run_pagoda(pagoda_bin, "generate", str(default_model), "--chat-template", str(path), "--prompt", prompt,
                   "--temperature", "0", "--max-tokens", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["prompt_tokens"] == len(expected_ids)
    # The model's own template gives a different prompt.
    r = run_pagoda(pagoda_bin, "generate", str(default_model), "--chat", "--prompt", prompt,
                   "--temperature", "0", "--max-tokens", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prompt_tokens"] != len(expected_ids)


def test_override_errors_are_one_line(pagoda_bin, default_model, tmp_path):
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}{{ m.content }")
    for path in (bad, tmp_path / "missing.jinja"):
        r = run_pagoda(pagoda_bin, "generate", str(default_model), "--chat-template", str(path), "--prompt", "x",
                       "--max-tokens", "1")
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
