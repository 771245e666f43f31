"""The chat-completions wire format shared by the judge and `strl serve`."""

from __future__ import annotations

import json

import pytest

from rlsys.openai_api import BadRequest, chunk_body, completion_body, load_json, parse_chat

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_a_full_request_is_read_and_defaults_fill_the_rest() -> None:
    c = parse_chat({"messages": MSG, "temperature": 0.7, "top_p": 0.9, "max_tokens": 32,
                    "stop": "\n", "stream": True, "model": "strl",
                    "response_format": {"type": "json_schema",
                                        "json_schema": {"schema": {"type": "object"}}}}, 64)
    assert (c.temperature, c.top_p, c.max_tokens, c.stop, c.stream, c.model) == (
        0.7, 0.9, 32, ("\n",), True, "strl")
    assert json.loads(c.schema) == {"type": "object"}
    d = parse_chat({"messages": MSG, "max_completion_tokens": 5}, 64, default_temperature=1.0)
    assert (d.max_tokens, d.temperature, d.top_p, d.stream, d.schema) == (5, 1.0, 1.0, False,
                                                                           None)
    assert parse_chat({"messages": MSG}, 64, default_max_tokens=512).max_tokens == 64


@pytest.mark.parametrize("req,field", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages"),
    ({"messages": MSG, "temperature": 5}, "temperature"),
    ({"messages": MSG, "temperature": float("nan")}, "temperature"),
    ({"messages": MSG, "temperature": True}, "temperature"),
    ({"messages": MSG, "top_p": 0}, "top_p"),
    ({"messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"messages": MSG, "max_tokens": 10**6}, "max_tokens"),
    ({"messages": MSG, "max_tokens": "8"}, "max_tokens"),
    ({"messages": MSG, "n": 3}, "n: only 1"),
    ({"messages": MSG, "stop": [1]}, "stop"),
    ({"messages": MSG, "stream": "yes"}, "stream"),
    ({"messages": MSG, "model": 7}, "model"),
    ({"messages": MSG, "response_format": {"type": "json_schema"}},
     "response_format.json_schema.schema"),
    ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format"),
    ({"messages": MSG, "logprobs": True}, "logprobs: not served here"),
    ({"messages": MSG, "top_logprobs": 3}, "top_logprobs: not served here"),
    ({"messages": MSG, "tools": [{"type": "function", "function": {"name": "f"}}]},
     "tools: not served here"),
    ({"messages": MSG, "tool_choice": "auto"}, "tool_choice: not served here"),
])
def test_bad_fields_are_named(req: dict, field: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_chat(req, 64)
    assert str(e.value).startswith(field), str(e.value)


def test_unserved_fields_left_at_their_off_values_are_fine() -> None:
    c = parse_chat({"messages": MSG, "logprobs": False, "tools": [], "logit_bias": {}}, 64)
    assert c.messages[0]["content"] == MSG[0]["content"]


def test_bodies_must_be_small_json_objects() -> None:
    assert load_json(b'{"a": 1}', 100) == {"a": 1}
    with pytest.raises(BadRequest, match="not JSON") as e:
        load_json(b"{nope", 100)
    assert e.value.status == 400
    with pytest.raises(BadRequest, match="must be a JSON object"):
        load_json(b"[1, 2]", 100)
    with pytest.raises(BadRequest, match="more than the limit of 10") as e:
        load_json(b'{"a": "0123456789"}', 10)
    assert e.value.status == 413
    with pytest.raises(BadRequest, match="not JSON"):
        load_json(b"\xff\xfe", 100)
    with pytest.raises(BadRequest, match="nested too deeply"):
        load_json(b"[" * 100_000 + b"]" * 100_000, 1 << 20)


def test_replies_have_the_openai_shape() -> None:
    body = completion_body("id1", "strl", "hello", "stop", 3, 2)
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    line = chunk_body("id1", "strl", {"content": "he"})
    assert line.startswith("data: ") and line.endswith("\n\n")
    assert json.loads(line[6:])["choices"][0]["delta"] == {"content": "he"}


SERIES_MSG = [{"role": "user", "content": [
    {"type": "text", "text": "Node 0 time series with length of 3: "},
    {"type": "timeseries", "timeseries": [1, 2.5, 3]},
    {"type": "text", "text": "; Node 1 time series with length of 2: "},
    {"type": "timeseries", "timeseries": [4.0, 5.0]},
    {"type": "text", "text": ". Which node leads?"}]}]


def test_timeseries_parts_become_placeholders_and_series_in_order() -> None:
    c = parse_chat({"messages": SERIES_MSG}, 64, series_limits=(8, 16))
    assert c.messages == [{"role": "user", "content": (
        "Node 0 time series with length of 3: <ts><ts/>; Node 1 time series with length "
        "of 2: <ts><ts/>. Which node leads?")}]
    assert c.series == ((1.0, 2.5, 3.0), (4.0, 5.0))
    text_only = parse_chat({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}, 64)
    assert text_only.messages[0]["content"] == "ab" and text_only.series == ()


@pytest.mark.parametrize("req,limits,match", [
    ({"messages": MSG, "prompt_embeds": "AAAA"}, (8, 16), "prompt_embeds: raw embeddings"),
    ({"messages": [{"role": "user", "content": [{"type": "input_embeds", "data": [1]}]}]},
     (8, 16), r"messages\[0\].content\[0\]: raw embeddings"),
    ({"messages": SERIES_MSG}, None, r"messages\[0\].content\[1\]: this server reads text"),
    ({"messages": SERIES_MSG}, (1, 16), r"content\[3\]: more than 1 series"),
    ({"messages": SERIES_MSG}, (8, 2), r"content\[1\].timeseries: a list of 1 to 2 finite"),
    ({"messages": [{"role": "user", "content": [
        {"type": "timeseries", "timeseries": [1, float("nan")]}]}]}, (8, 16), "finite"),
    ({"messages": [{"role": "user", "content": [
        {"type": "timeseries", "timeseries": []}]}]}, (8, 16), "a list of 1 to 16"),
    ({"messages": [{"role": "user", "content": [
        {"type": "timeseries", "timeseries": [True]}]}]}, (8, 16), "finite numbers"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "url": "x"}]}]},
     (8, 16), r"content\[0\]: a part \{type: text or timeseries"),
    ({"messages": [{"role": "user", "content": ["plain"]}]}, None,
     r"content\[0\]: a part \{type: text,"),
])
def test_series_parts_and_raw_embeddings_are_checked(req: dict, limits, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        parse_chat(req, 64, series_limits=limits)
