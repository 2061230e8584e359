"""The reference renderer for pagoda's Jinja2 interpreter: jinja2 configured as HF transformers
configures it for chat templates (its own compiled-template function when transformers is installed,
otherwise an ImmutableSandboxedEnvironment built the same way), and a runner for `pagoda template`."""
import json
import os
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

try:
    from transformers.utils.chat_template_utils import _compile_jinja_template as _hf_compile
except Exception:  # transformers missing or its private helper renamed
    _hf_compile = None


def _fallback_compile(source: str):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


USING_TRANSFORMERS = _hf_compile is not None


def reference_render(source: str, context: dict):
    """Returns (ok, text): the rendering, or ok=False with the exception's text."""
    compile_fn = _hf_compile or _fallback_compile
    try:
        return True, compile_fn(source).render(**context)
    except Exception as e:  # noqa: BLE001 - any jinja2/Python error means "rejected"
        return False, f"{type(e).__name__}: {e}"


def pagoda_render(binary: Path, source: str, context: dict, chat: bool = False):
    """Runs `pagoda template`; returns (ok, stdout bytes decoded, stderr)."""
    with tempfile.TemporaryDirectory() as d:
        t = Path(d) / "t.jinja"
        c = Path(d) / "c.json"
        t.write_bytes(source.encode("utf-8"))
        c.write_text(json.dumps(context, ensure_ascii=False), encoding="utf-8")
        args = [str(binary), "template", "--template", str(t), "--context", str(c)]
        if chat:
            args.append("--chat")
        p = subprocess.run(args, capture_output=True, timeout=60)
    return p.returncode == 0, p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")
