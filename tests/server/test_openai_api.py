"""The OpenAI API of `pagoda serve` through the official `openai` client: completions and chat,
streaming and not, n, stop, seeds, logprobs, echo, token-id prompts, vLLM's return_token_ids,
usage counts against /tokenize, and the side endpoints."""
import json

import httpx
import pytest

from conftest import MODEL_NAME, metrics, wait_idle

PROMPT = "The capital of France is"
MESSAGES = [{"role": "user", "content": "Name three colors."}]


def tokenize(server, **body):
    r = httpx.post(server.url + "/tokenize", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_models_health_version(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]
    assert models.data[0].object == "model"
    raw = httpx.get(server.url + "/v1/models").json()
    assert raw["object"] == "list" and raw["data"][0]["max_model_len"] == 512
    assert httpx.get(server.url + "/health").status_code == 200
    version = httpx.get(server.url + "/version").json()["version"]
    assert version.count(".") == 2


def test_completion_greedy_and_usage(server, client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0,
                                  extra_body={"return_token_ids": True, "ignore_eos": True})
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == MODEL_NAME
    choice = r.choices[0]
    assert choice.index == 0 and choice.finish_reason == "length"
    ids = choice.model_extra["token_ids"]
    assert len(ids) == 8
    prompt_ids = tokenize(server, prompt=PROMPT)["tokens"]
    assert choice.model_extra["prompt_token_ids"] == prompt_ids
    assert r.usage.prompt_tokens == len(prompt_ids)
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == len(prompt_ids) + 8
    text = httpx.post(server.url + "/detokenize", json={"tokens": ids}).json()["prompt"]
    assert text == choice.text
    # Greedy is deterministic, and a prompt given as its token ids gives the same completion.
    again = client.completions.create(model=MODEL_NAME, prompt=prompt_ids, max_tokens=8, temperature=0,
                                      extra_body={"ignore_eos": True})
    assert again.choices[0].text == choice.text


def test_completion_several_prompts_and_n(server, client):
    r = client.completions.create(model=MODEL_NAME, prompt=[PROMPT, "One, two,"], n=2, max_tokens=4, seed=3,
                                  temperature=1.0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    n_prompt = sum(len(tokenize(server, prompt=p)["tokens"]) for p in [PROMPT, "One, two,"])
    assert r.usage.prompt_tokens == n_prompt
    assert r.usage.completion_tokens <= 16


def test_chat_usage_matches_tokenize(server, client):
    r = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == tokenize(server, messages=MESSAGES)["count"]
    assert 1 <= r.usage.completion_tokens <= 6


def test_chat_content_parts_same_as_string(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name three colors."}]}]
    a = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=5, temperature=0)
    b = client.chat.completions.create(model=MODEL_NAME, messages=parts, max_tokens=5, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_streaming_completion_matches_non_streaming(client):
    full = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=10, temperature=0,
                                     extra_body={"ignore_eos": True})
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=10, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_streaming_chat_with_n_and_raw_framing(server):
    body = {"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": 5, "n": 2, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    roles = {p["choices"][0]["index"] for p in payloads if p["choices"] and "role" in p["choices"][0]["delta"]}
    assert roles == {0, 1}
    finished = [p["choices"][0]["index"] for p in payloads if p["choices"] and p["choices"][0]["finish_reason"]]
    assert sorted(finished) == [0, 1]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    usage = payloads[-1]["usage"]
    assert payloads[-1]["choices"] == [] and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_seed_reproducible(client):
    def sample(seed):
        return client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=1.0,
                                         seed=seed, extra_body={"ignore_eos": True}).choices[0].text

    assert sample(1234) == sample(1234)
    texts = {sample(s) for s in range(5)}
    assert len(texts) > 1  # sampling at temperature 1 does vary with the seed


def test_stop_string(client):
    base = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    words = base.split()
    assert len(words) >= 3, base
    stop = " " + words[2]
    cut = base[: base.index(stop)]
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0, stop=[stop],
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].text == cut
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].model_extra["stop_reason"] == stop
    kept = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0, stop=stop,
                                     extra_body={"ignore_eos": True, "include_stop_str_in_output": True})
    assert kept.choices[0].text == cut + stop


def test_completion_logprobs_and_echo(server, client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2,
                                  extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == r.choices[0].text or len(r.choices[0].text) > 0
    for tok, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert value <= 0.0
        assert 1 <= len(top) <= 3 and tok in top
        # Greedy: the chosen token is the most likely one.
        assert value == pytest.approx(max(top.values()), abs=1e-4)
    assert lp.text_offset == sorted(lp.text_offset)

    e = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=3, temperature=0, echo=True,
                                  logprobs=1, extra_body={"ignore_eos": True})
    n_prompt = len(tokenize(server, prompt=PROMPT)["tokens"])
    assert e.choices[0].text.startswith(PROMPT)
    elp = e.choices[0].logprobs
    assert len(elp.tokens) == n_prompt + 3
    assert elp.token_logprobs[0] is None and all(v is not None for v in elp.token_logprobs[1:])


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=4, temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert 1 <= len(content) <= 4
    for item in content:
        assert item.logprob <= 0.0
        assert bytes(item.bytes).decode("utf-8", errors="replace") == item.token
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.top_logprobs[-1].logprob
        assert item.logprob == pytest.approx(item.top_logprobs[0].logprob, abs=1e-4)


def test_return_token_ids_in_chat(server):
    body = {"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": 4, "return_token_ids": True}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()
    assert r["prompt_token_ids"] == tokenize(server, messages=MESSAGES)["tokens"]
    assert len(r["choices"][0]["token_ids"]) == r["usage"]["completion_tokens"]


def test_tokenize_detokenize_round_trip(server):
    t = tokenize(server, prompt="Hello world, hello pagoda!")
    assert t["count"] == len(t["tokens"]) and t["max_model_len"] == 512
    d = httpx.post(server.url + "/detokenize", json={"tokens": t["tokens"]}).json()
    assert d["prompt"].endswith("Hello world, hello pagoda!")
    plain = tokenize(server, prompt="Hello", add_special_tokens=False)
    assert plain["count"] >= 1


def test_metrics_move(server, client):
    before = metrics(server.url)
    client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, temperature=0,
                              extra_body={"ignore_eos": True})
    after = wait_idle(server.url)
    assert after["pagoda:prompt_tokens_total"] > before["pagoda:prompt_tokens_total"]
    assert after["pagoda:generation_tokens_total"] >= before["pagoda:generation_tokens_total"] + 4
    key = f'pagoda:request_success_total{{model_name="{MODEL_NAME}",finished_reason="length"}}'
    assert after[key] == before[key] + 1
    assert after["pagoda:e2e_request_latency_seconds_count"] == before["pagoda:e2e_request_latency_seconds_count"] + 1
    assert after["pagoda:time_to_first_token_seconds_count"] > before["pagoda:time_to_first_token_seconds_count"]
    assert after["pagoda:num_requests_running"] == 0 and after["pagoda:kv_cache_usage_perc"] == 0
