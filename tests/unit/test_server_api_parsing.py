"""Unit tests for the built-in server's api/ (parsing requests): validation and normalisation, no model, no HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from backends.builtin_server.api.body import parse_json_object
from backends.builtin_server.api.llm import parse_llm_request
from backends.builtin_server.api.messages import normalize_messages
from backends.builtin_server.api.openai_chat import parse_chat_request
from backends.builtin_server.api.openai_completions import parse_completion_request
from backends.builtin_server.api.protocol import (
    CHAT_KEYS,
    COMPLETION_KEYS,
    LLM_GENERATE_KEYS,
    ChatCompletionRequest,
    LlmRequest,
)
from backends.builtin_server.api.validation import api_error_from_validation, field_path
from backends.builtin_server.engine.request import (
    DEFAULT_CHAT_MAX_NEW_TOKENS,
    DEFAULT_COMPLETION_MAX_NEW_TOKENS,
    ChatMessage,
    GenerationDefaults,
    GenerationRequest,
    Sampling,
    TokenBudget,
    fallback_prompt,
    resolve_max_new_tokens,
)
from backends.builtin_server.engine.stops import find_stop, held_back
from backends.builtin_server.errors import ApiError, model_not_found

LIMIT = 4096
MSGS = [{"role": "user", "content": "hi"}]
HF_DEFAULTS = GenerationDefaults()


def llm(**body: Any) -> GenerationRequest:
    return parse_llm_request({"messages": MSGS, **body}, limit=LIMIT, defaults=HF_DEFAULTS)


def chat(**body: Any) -> GenerationRequest:
    return parse_chat_request({"model": "m", "messages": MSGS, **body}, served_name="m", limit=LIMIT)


def error_of(fn: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    return info.value


# ----------------------------------------------------------------------------- JSON body


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (b"{bad", "not valid JSON"),
        (b"[1, 2]", "not an array"),
        (b'"x"', "not a string"),
        (b"\xff\xfe", "not valid JSON"),
    ],  # fmt: skip
)
def test_parse_json_object_rejects(raw: bytes, needle: str) -> None:
    err = error_of(parse_json_object, raw)
    assert err.status == 400
    assert needle in err.message


def test_parse_json_object_accepts_object() -> None:
    assert parse_json_object(b' {"a": 1} ') == {"a": 1}


def test_error_body_shape() -> None:
    # OpenAI's schema: param and code are required (nullable), and code is a string.
    body = ApiError(400, "nope").body()
    assert body == {"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": None}}
    assert model_not_found("x").body() == {
        "error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "param": "model",
                  "code": "model_not_found"}
    }  # fmt: skip


# ----------------------------------------------------------------------------- messages


def test_messages_text_parts_are_joined_and_name_kept() -> None:
    msgs = normalize_messages(
        [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "name": "bob", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ]
    )
    assert msgs == (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "a\nb", "bob"),
        ChatMessage("assistant", ""),
    )
    assert msgs[1].for_template() == {"role": "user", "content": "a\nb"}


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (None, "messages is required"),
        ([], "empty array"),
        ("hi", "non-empty array"),
        (["hi"], "messages[0] must be an object"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content is required"),
        ([{"role": "user", "content": 5}], "messages[0].content must be"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "text-only"),
        ([{"role": "user", "content": "x", "name": 3}], "messages[0].name"),
    ],
)
def test_messages_wrong_shapes(value: Any, needle: str) -> None:
    err = error_of(normalize_messages, value)
    assert err.status == 400
    assert needle in err.message


def test_fallback_prompt_uses_name_then_role() -> None:
    msgs = (ChatMessage("system", "rules"), ChatMessage("user", "hi", "bob"))
    assert fallback_prompt(msgs) == "system: rules\nbob: hi\nassistant: "


# ----------------------------------------------------------------------------- /llm/


def test_llm_accepts_inputs_with_names() -> None:
    req = parse_llm_request(
        {"inputs": [{"role": "user", "name": "user", "content": "hi"}], "max_length": 4096, "temperature": 0.5},
        limit=LIMIT,
        defaults=HF_DEFAULTS,
    )
    assert req.messages == (ChatMessage("user", "hi", "user"),)
    assert req.budget == TokenBudget(field="max_length", max_length=4096)
    # temperature without do_sample: the caller means sampling (HF would silently ignore it).
    assert req.sampling == Sampling(do_sample=True, temperature=0.5, top_p=1.0, top_k=50)


@pytest.mark.parametrize("key", ["model", "foo", "num_beams", "stream"])
def test_llm_unknown_key_names_it_and_lists_allowed(key: str) -> None:
    err = error_of(llm, **{key: 1})
    assert err.status == 400
    assert repr(key) in err.message
    assert "max_new_tokens" in err.message and "repetition_penalty" in err.message


def test_llm_messages_and_inputs_together_rejected() -> None:
    err = error_of(parse_llm_request, {"messages": MSGS, "inputs": MSGS}, limit=LIMIT, defaults=HF_DEFAULTS)
    assert "not both" in err.message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"max_new_tokens": 10**9}, "max_new_tokens must be <= 4096"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"max_new_tokens": -5}, "max_new_tokens must be >= 1"),
        ({"max_new_tokens": "10"}, "max_new_tokens must be an integer"),
        ({"max_new_tokens": True}, "max_new_tokens must be an integer"),
        ({"max_new_tokens": 1.5}, "max_new_tokens must be an integer"),
        ({"max_length": 0}, "max_length must be >= 1"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"top_p": 0}, "top_p must be > 0"),
        ({"top_p": 1.5}, "top_p must be <= 1"),
        ({"do_sample": "yes"}, "do_sample must be true or false"),
        ({"repetition_penalty": 0}, "repetition_penalty must be > 0"),
    ],
)
def test_llm_bad_values(body: dict[str, Any], needle: str) -> None:
    err = error_of(llm, **body)
    assert err.status == 400
    assert needle in err.message


def test_llm_limit_error_names_the_fix() -> None:
    assert "--max-new-tokens-limit is 4096" in error_of(llm, max_new_tokens=5000).message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, Sampling(do_sample=False)),
        ({"temperature": 0}, Sampling(do_sample=False)),
        ({"temperature": 0, "do_sample": True}, Sampling(do_sample=False)),
        ({"do_sample": False, "temperature": 0.7}, Sampling(do_sample=False)),
        ({"do_sample": True}, Sampling(do_sample=True, temperature=1.0, top_p=1.0, top_k=50)),
        ({"temperature": 0.7, "top_k": 5, "top_p": 0.9}, Sampling(do_sample=True, temperature=0.7, top_p=0.9, top_k=5)),
        ({"min_new_tokens": 3, "repetition_penalty": 1.2}, Sampling(do_sample=False, repetition_penalty=1.2, min_new_tokens=3)),
    ],
)  # fmt: skip
def test_llm_sampling_resolution(body: dict[str, Any], expected: Sampling) -> None:
    assert llm(**body).sampling == expected


def test_llm_defaults_come_from_generation_config() -> None:
    defaults = GenerationDefaults(do_sample=True, temperature=0.6, top_p=0.9, top_k=20, repetition_penalty=1.1)
    req = parse_llm_request({"messages": MSGS}, limit=LIMIT, defaults=defaults)
    assert req.sampling == Sampling(do_sample=True, temperature=0.6, top_p=0.9, top_k=20, repetition_penalty=1.1)


def test_llm_max_new_tokens_wins_over_max_length() -> None:
    assert llm(max_new_tokens=7, max_length=100).budget == TokenBudget(field="max_new_tokens", max_new_tokens=7)


# ----------------------------------------------------------------------------- OpenAI


def test_chat_defaults_are_openai_sampling() -> None:
    req = chat()
    assert req.sampling == Sampling(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
    assert req.budget == TokenBudget(field="max_completion_tokens", default=DEFAULT_CHAT_MAX_NEW_TOKENS)
    assert (req.stream, req.include_usage, req.stop) == (False, False, ())


def test_chat_fields() -> None:
    req = chat(
        temperature=0,
        max_completion_tokens=9,
        max_tokens=99,
        stop="END",
        stream=True,
        stream_options={"include_usage": True},
        seed=1,
        user="u",
        n=1,
        tools=[],
        tool_choice="auto",
        presence_penalty=0.5,
    )
    assert req.sampling == Sampling(do_sample=False, presence_penalty=0.5, seed=1)
    assert req.budget.max_new_tokens == 9 and req.budget.field == "max_completion_tokens"
    assert (req.stream, req.include_usage, req.stop) == (True, True, ("END",))
    assert chat(max_tokens=12).budget == TokenBudget(field="max_tokens", max_new_tokens=12)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "other"}, 404, "The model `other` does not exist."),
        ({"model": None}, 400, "model is required"),
        ({"n": 0}, 400, "n must be >= 1, got 0"),
        ({"foo": 1}, 400, "unsupported field 'foo'"),
        ({"temperature": 3}, 400, "temperature must be <= 2"),
        ({"max_tokens": "5"}, 400, "max_tokens must be an integer"),
        ({"max_completion_tokens": 0}, 400, "max_completion_tokens must be >= 1"),
        ({"stop": 5}, 400, "stop must be a string or an array"),
        ({"stop": ["ok", ""]}, 400, "stop[1] must be a non-empty string"),
        ({"stream": "yes"}, 400, "stream must be true or false"),
        ({"stream_options": []}, 400, "stream_options must be an object"),
        ({"seed": "x"}, 400, "seed must be an integer"),
        ({"logprobs": True, "top_logprobs": 21}, 400, "top_logprobs must be <= 20, got 21"),
        ({"logprobs": "x"}, 400, "logprobs must be true or false"),
        ({"response_format": {"type": "json_schema"}}, 400, "response_format.json_schema.schema is required"),
        ({"response_format": {"type": "yaml"}}, 400, "response_format.type"),
        ({"messages": []}, 400, "messages must be a non-empty array"),
    ],
)
def test_chat_rejects(body: dict[str, Any], status: int, needle: str) -> None:
    full = {"model": "m", "messages": MSGS, **body}
    err = error_of(parse_chat_request, full, served_name="m", limit=LIMIT)
    assert (err.status, needle in err.message) == (status, True), err.message


def test_completion_request() -> None:
    req = parse_completion_request(
        {"model": "m", "prompt": ["Once"], "max_tokens": 3, "temperature": 0}, served_name="m", limit=LIMIT
    )
    assert (req.prompt, req.messages, req.budget.max_new_tokens, req.sampling) == ("Once", None, 3, Sampling(False))
    default = parse_completion_request({"model": "m", "prompt": "x"}, served_name="m", limit=LIMIT)
    assert default.budget.default == DEFAULT_COMPLETION_MAX_NEW_TOKENS
    for bad in ({"prompt": ""}, {"prompt": [1, 2]}, {"prompt": "x", "echo": True}, {"prompt": "x", "best_of": 2},
                {"prompt": "x", "logprobs": 6}, {"prompt": "x", "n": 0}):
        err = error_of(parse_completion_request, {"model": "m", **bad}, served_name="m", limit=LIMIT)
        assert err.status == 400


# ----------------------------------------------------------------------------- token budget


def resolve(budget: TokenBudget, prompt: int = 30, context: int | None = 2048, limit: int = LIMIT) -> int:
    return resolve_max_new_tokens(budget, prompt_tokens=prompt, context=context, limit=limit)


def test_budget_explicit_and_defaults() -> None:
    assert resolve(TokenBudget(field="max_new_tokens", max_new_tokens=100)) == 100
    assert resolve(TokenBudget(field="max_tokens", default=512)) == 512
    assert resolve(TokenBudget(field="max_tokens", default=512), prompt=1800) == 248  # capped by the context
    assert resolve(TokenBudget(field="max_tokens", default=512), limit=64) == 64
    assert resolve(TokenBudget(field="max_tokens", default=512), context=None) == 512


def test_budget_max_length_is_prompt_plus_new() -> None:
    assert resolve(TokenBudget(field="max_length", max_length=100)) == 70
    # AgentScope's shipped config says max_length 4096: capped by the context, not an error.
    assert resolve(TokenBudget(field="max_length", max_length=4096)) == 2048 - 30
    assert resolve(TokenBudget(field="max_length", max_length=4096), context=None, limit=1000) == 1000
    err = error_of(resolve, TokenBudget(field="max_length", max_length=30))
    assert "raise max_length above 30" in err.message


def test_budget_explicit_that_does_not_fit_is_an_error() -> None:
    err = error_of(resolve, TokenBudget(field="max_tokens", max_new_tokens=2040))
    assert err.status == 400
    assert "max_tokens 2040 does not fit" in err.message and "at most 2018" in err.message
    err = error_of(resolve, TokenBudget(field="max_tokens"), prompt=2048)
    assert "fills the model's context" in err.message


# ----------------------------------------------------------------------------- stop strings


def test_find_stop_and_held_back() -> None:
    assert find_stop("abc END def STOP", ("STOP", "END")) == 4
    assert find_stop("abc", ("x",)) is None
    assert held_back("hello EN", ("END",)) == 2
    assert held_back("hello E", ("END", "EXIT")) == 1
    assert held_back("hello", ("END",)) == 0
    assert held_back("hello", ()) == 0


# ----------------------------------------------------------------------------- the ValidationError translator


def translated(model: type[BaseModel], body: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    err = api_error_from_validation(info.value, **kwargs)
    assert err.status == 400 and err.error_type == "invalid_request_error"
    return err.message


CHAT_BODY = {"model": "m", "messages": MSGS}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": "5"}, 'max_tokens must be an integer, got a string "5"'),
        ({"max_tokens": True}, "max_tokens must be an integer, got a boolean true"),
        ({"temperature": "hot"}, 'temperature must be a number, got a string "hot"'),
        ({"temperature": float("nan")}, "temperature must be a finite number, got a number NaN"),
        ({"stream": 1}, "stream must be true or false, got a number 1"),
        ({"user": 7}, "user must be a string, got a number 7"),
        ({"tools": {}}, "tools must be an array, got an object {}"),
        ({"stream_options": []}, "stream_options must be an object, got an empty array"),
        ({"stream_options": {"include_usage": "y"}}, 'stream_options.include_usage must be true or false, got a string "y"'),
        ({"n": 0}, "n must be >= 1, got 0"),
        ({"top_p": 0}, "top_p must be > 0.0, got 0"),
        ({"temperature": 2.5}, "temperature must be <= 2.0, got 2.5"),
    ],
)  # fmt: skip
def test_translator_wrong_type_or_range_names_field_expected_and_got(body: dict[str, Any], message: str) -> None:
    assert translated(ChatCompletionRequest, {**CHAT_BODY, **body}) == message


def test_translator_unknown_key_is_reported_first_and_worded_by_the_route() -> None:
    body = {**CHAT_BODY, "max_tokens": "5", "zeta": 1, "alpha": 2}
    assert translated(ChatCompletionRequest, body) == "unsupported field 'alpha'; leave it out"
    message = translated(ChatCompletionRequest, body, unknown_key=ChatCompletionRequest.unknown_key_message)
    assert message.startswith("unsupported field 'alpha' for /v1/chat/completions; known fields: ")
    assert "max_completion_tokens" in message


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}],
         'messages[1].role must be one of assistant, developer, function, system, tool, user, got a string "wizard"'),
        ([{"content": "a"}], "messages[0].role is required"),
        ([{"role": "user", "content": "a", "name": ["bob"]}], 'messages[0].name must be a string, got an array ["bob"]'),
        ([{"role": "user", "content": {"text": "a"}}],
         'messages[0].content must be a string or an array of text parts, got an object {"text": "a"}'),
        ([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, {"type": "image_url"}]}],
         'messages[0].content[2] must be {"type": "text", "text": "..."} (this server is text-only), '
         'got an object {"type": "image_url"}'),
        ([{"role": "user", "content": "a"}, 3], "messages[1] must be an object with role and content, got a number 3"),
    ],
)  # fmt: skip
def test_translator_names_nested_paths_with_list_indexes(messages: list[Any], message: str) -> None:
    assert translated(ChatCompletionRequest, {**CHAT_BODY, "messages": messages}) == message


def test_translator_list_index_path_outside_messages() -> None:
    assert translated(ChatCompletionRequest, {**CHAT_BODY, "stop": ["a", "b", ""]}) == (
        'stop[2] must be a non-empty string, got a string ""'
    )


def test_translator_prefix_places_a_value_validated_on_its_own() -> None:
    err = error_of(normalize_messages, [{"role": "user", "content": 5}], field="inputs")
    assert err.message == "inputs[0].content must be a string or an array of text parts, got a number 5"


def test_translator_rule_sentence_and_long_values() -> None:
    both = translated(LlmRequest, {"messages": MSGS, "inputs": MSGS})
    assert both == "send the chat as either messages or inputs, not both"
    # A long value is cut short: the message is for a person, the body may be megabytes.
    long = translated(ChatCompletionRequest, {**CHAT_BODY, "user": ["x" * 500]})
    assert long.startswith('user must be a string, got an array ["xxx') and long.endswith("...")
    assert len(long) < 150


def test_field_path() -> None:
    assert field_path(()) == ""
    assert field_path(("messages", 0, "content", 2)) == "messages[0].content[2]"
    assert field_path(("stream_options", "include_usage")) == "stream_options.include_usage"


# ----------------------------------------------------------------------------- accepted fields stay accepted


def test_accepted_keys_are_exactly_the_documented_sets() -> None:
    common = {"model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed", "user",
              "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "metadata", "store", "service_tier",
              "top_k", "repetition_penalty", "min_tokens"}  # fmt: skip
    chat_only = {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice",
                 "parallel_tool_calls", "functions", "function_call", "reasoning_effort", "modalities"}  # fmt: skip
    assert set(CHAT_KEYS) == common | chat_only
    assert set(COMPLETION_KEYS) == common | {"prompt", "echo", "suffix", "best_of"}
    assert LLM_GENERATE_KEYS == (
        "max_new_tokens", "max_length", "min_new_tokens", "do_sample", "temperature", "top_p", "top_k",
        "repetition_penalty",
    )  # fmt: skip


def test_the_other_openai_fields_are_honoured() -> None:
    req = chat(
        metadata={"a": 1}, store=False, service_tier="auto", modalities=["text"], logit_bias={"42": -100, "7": 2.5},
        frequency_penalty=-2, logprobs=False, response_format={"type": "text", "x": 1}, user="u-1",
    )  # fmt: skip
    assert req.sampling == Sampling(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, frequency_penalty=-2.0,
                                    logit_bias=((7, 2.5), (42, -100.0)))  # fmt: skip
    # Unknown keys inside a message or stream_options are ignored, as clients send extras there.
    msgs = [{"role": "tool", "content": "42", "tool_call_id": "c1"}, {"role": "user", "content": "hi"}]
    assert chat(messages=msgs, stream_options={"include_usage": True, "x": 1}).include_usage is True


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"store": True}, "store is not supported"),
        ({"service_tier": "flex"}, "service_tier 'flex' is not offered"),
        ({"top_logprobs": 3}, "top_logprobs needs logprobs"),
        ({"reasoning_effort": "low"}, "reasoning_effort is not supported"),
        ({"modalities": ["text", "audio"]}, 'modalities must be ["text"]'),
        ({"logit_bias": {"x": 1}}, "logit_bias keys must be token ids"),
        ({"logit_bias": {"5": 101}}, "logit_bias['5'] must be a number from -100 to 100"),
    ],
)
def test_fields_this_server_cannot_honour_are_refused_by_name(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_chat_request({"model": "m", "messages": MSGS, **body}, served_name="m", limit=4096)
    assert err.value.status == 400 and needle in err.value.message


def test_max_completion_tokens_wins_and_max_tokens_is_then_not_looked_at() -> None:
    assert chat(max_completion_tokens=9, max_tokens="stale").budget == TokenBudget(
        field="max_completion_tokens", max_new_tokens=9
    )
    assert "max_tokens must be <= 4096" in error_of(chat, max_completion_tokens=None, max_tokens=5000).message
