"""Chat templates rendered by `pagoda template --chat` against HF transformers' apply_chat_template
(tokenize=False) on a PreTrainedTokenizerFast that carries the template: the templates embedded in the
real GGUF models, and templates in the style of Llama 3, Qwen 2.5, Mistral and Gemma
(tests/data/templates). Byte-for-byte equality, and the same refusals (raise_exception)."""
import copy
from pathlib import Path

import pytest
from gguf import GGUFReader

from jinja_reference import pagoda_render

transformers = pytest.importorskip("transformers", reason="the reference renderer is HF transformers")
from tokenizers import Tokenizer, models  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent.parent / "data" / "templates"
BOS, EOS = "<s>", "</s>"

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
TURNS = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "  And of Japan?  Answer with \"quotes\" & <tags>, é 日本\n"},
]
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "description": "City name"},
                                      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Local time", "parameters": {"type": "object", "properties": {}}}},
]
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "name": "get_weather", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
    {"role": "assistant", "content": "It is 21.5 °C and clear in Paris."},
    {"role": "user", "content": "Thanks!"},
]
QWEN_TOOL_TURNS = TOOL_TURNS[:1] + [
    {"role": "assistant", "content": "Let me check both.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"type": "function", "function": {"name": "get_time", "arguments": {}}}]},
    {"role": "tool", "content": "{\"temperature\": 21.5}"},
    {"role": "tool", "content": "14:05"},
] + TOOL_TURNS[3:]


def _tokenizer(template: str):
    tok = Tokenizer(models.WordLevel({"<unk>": 0, BOS: 1, EOS: 2}, unk_token="<unk>"))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS)
    fast.chat_template = template
    return fast


def _reference(template, messages, tools, add_generation_prompt, extra):
    try:
        return True, _tokenizer(template).apply_chat_template(
            copy.deepcopy(messages), tools=copy.deepcopy(tools), add_generation_prompt=add_generation_prompt,
            tokenize=False, **copy.deepcopy(extra))
    except Exception as e:  # noqa: BLE001 - raise_exception and friends
        return False, f"{type(e).__name__}: {e}"


def _check(pagoda_bin, template, messages, tools=None, add_generation_prompt=False, extra=None, expect_ok=True):
    extra = extra or {}
    ok, expected = _reference(template, messages, tools, add_generation_prompt, extra)
    assert ok == expect_ok, expected
    context = {"messages": messages, "tools": tools, "add_generation_prompt": add_generation_prompt,
               "bos_token": BOS, "eos_token": EOS, **extra}
    got_ok, got, err = pagoda_render(pagoda_bin, template, context, chat=True)
    if ok:
        assert got_ok, err
        assert got == expected
    else:
        assert not got_ok, f"transformers raised {expected} but pagoda rendered {got!r}"
        assert "raise_exception" in err or "error" in err


def _gguf_template(path: Path):
    reader = GGUFReader(str(path))
    field = reader.fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def test_reference_is_transformers_special_tokens():
    # render_chat passes exactly bos_token and eos_token as special tokens; so must the reference.
    assert _tokenizer("x").special_tokens_map == {"bos_token": BOS, "eos_token": EOS}


@pytest.mark.parametrize("with_system", [True, False])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_gguf_template(pagoda_bin, default_model, with_system, add_generation_prompt):
    template = _gguf_template(default_model)
    assert template and "<|im_start|>" in template
    messages = ([SYSTEM] if with_system else []) + TURNS
    _check(pagoda_bin, template, messages, add_generation_prompt=add_generation_prompt)


def test_gemma_gguf_has_no_embedded_template(gemma_model):
    # This GGUF ships without tokenizer.chat_template; the Gemma-style template below covers the format.
    reader = GGUFReader(str(gemma_model))
    assert "tokenizer.ggml.model" in reader.fields
    assert _gguf_template(gemma_model) is None


STYLE_CASES = []
for name in ("llama3", "qwen2_5", "mistral", "gemma"):
    for with_system in (True, False):
        for agp in (True, False):
            STYLE_CASES.append((name, with_system, agp))


@pytest.mark.parametrize("name,with_system,add_generation_prompt", STYLE_CASES)
def test_style_templates_plain_chat(pagoda_bin, name, with_system, add_generation_prompt):
    template = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
    messages = ([SYSTEM] if with_system else []) + TURNS
    extra = {"date_string": "26 Jul 2024"} if name == "llama3" else {}
    _check(pagoda_bin, template, messages, add_generation_prompt=add_generation_prompt, extra=extra)


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("in_user_message", [True, False])
def test_llama3_tools(pagoda_bin, add_generation_prompt, in_user_message):
    template = (TEMPLATES / "llama3.jinja").read_text(encoding="utf-8")
    _check(pagoda_bin, template, [SYSTEM] + TOOL_TURNS, tools=TOOLS, add_generation_prompt=add_generation_prompt,
           extra={"date_string": "01 Jan 2025", "tools_in_user_message": in_user_message})


def test_llama3_today_from_strftime_now(pagoda_bin):
    # No date_string: the template calls strftime_now("%d %b %Y") in both renderers.
    template = (TEMPLATES / "llama3.jinja").read_text(encoding="utf-8")
    _check(pagoda_bin, template, TURNS, add_generation_prompt=True)


def test_llama3_rejects_parallel_tool_calls(pagoda_bin):
    template = (TEMPLATES / "llama3.jinja").read_text(encoding="utf-8")
    _check(pagoda_bin, template, QWEN_TOOL_TURNS, tools=TOOLS, extra={"date_string": "01 Jan 2025"}, expect_ok=False)


@pytest.mark.parametrize("with_system", [True, False])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_qwen_tools(pagoda_bin, with_system, add_generation_prompt):
    template = (TEMPLATES / "qwen2_5.jinja").read_text(encoding="utf-8")
    messages = ([SYSTEM] if with_system else []) + QWEN_TOOL_TURNS
    _check(pagoda_bin, template, messages, tools=TOOLS, add_generation_prompt=add_generation_prompt)


def test_qwen_tool_calls_without_tool_definitions(pagoda_bin):
    template = (TEMPLATES / "qwen2_5.jinja").read_text(encoding="utf-8")
    _check(pagoda_bin, template, TOOL_TURNS, add_generation_prompt=True)


@pytest.mark.parametrize("name", ["mistral", "gemma"])
def test_role_alternation_is_enforced(pagoda_bin, name):
    template = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
    bad = [SYSTEM, {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    _check(pagoda_bin, template, bad, expect_ok=False)
    _check(pagoda_bin, template, [{"role": "assistant", "content": "first"}], expect_ok=False)


def test_mistral_rejects_tool_role(pagoda_bin):
    template = (TEMPLATES / "mistral.jinja").read_text(encoding="utf-8")
    _check(pagoda_bin, template, [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}], expect_ok=False)


def test_gemma_multimodal_content(pagoda_bin):
    template = (TEMPLATES / "gemma.jinja").read_text(encoding="utf-8")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Describe images."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is this?  "}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        {"role": "user", "content": "Thanks"},
    ]
    _check(pagoda_bin, template, messages, add_generation_prompt=True)


def test_null_keys_are_dropped_and_reasoning_aliased(pagoda_bin):
    # transformers drops None-valued message keys and copies reasoning_content to `thinking`.
    template = ("{% for m in messages %}{{ m | tojson }}|{{ m.content is defined }}|"
                "{{ m.thinking | default('-') }}\n{% endfor %}{{ tools }}|{{ documents }}|{{ add_generation_prompt }}|"
                "{{ bos_token }}{{ eos_token }}|{{ custom }}")
    messages = [{"role": "user", "content": "q", "name": None},
                {"role": "assistant", "content": None, "reasoning_content": "hmm", "extra": [1, None]}]
    _check(pagoda_bin, template, messages, add_generation_prompt=True, extra={"custom": {"k": [1, 2.5]}})
