"""Drives rlmd's OpenAI-compatible endpoint with OpenAI's own Python SDK, unchanged.

Usage: openai_chat.py BASE_URL CASE. Prints one JSON object: what the SDK gave back.
"""

import json
import sys

import openai

base_url, case = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused-without-keys", max_retries=0)


def whole():
    completion = client.chat.completions.create(
        model="rlm",
        messages=[{"role": "user", "content": "What is the sum of the numbers?"}],
        extra_body={"context": [19, 23], "max_iterations": 5},
    )
    print(json.dumps({
        "id": completion.id,
        "object": completion.object,
        "model": completion.model,
        "content": completion.choices[0].message.content,
        "role": completion.choices[0].message.role,
        "finish_reason": completion.choices[0].finish_reason,
        "usage": completion.usage.model_dump(),
    }))


def streamed():
    stream = client.chat.completions.create(
        model="rlm:openai/gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Earlier question."},
            {"role": "assistant", "content": "Earlier answer."},
            {"role": "user", "content": "What is the sum of the numbers?"},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, content, finish, usage, ids = [], [], None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        if extra.get("reasoning_content"):
            reasoning.append(extra["reasoning_content"])
        if delta.content:
            content.append(delta.content)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    print(json.dumps({
        "ids": sorted(ids),
        "reasoning": "".join(reasoning),
        "content": "".join(content),
        "finish_reason": finish,
        "usage": usage,
    }))


def errors():
    seen = {}
    try:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError as error:
        seen["unknown_model"] = {"status": error.status_code, "code": error.code}
    try:
        client.chat.completions.create(model="rlm", messages=[{"role": "user", "content": "hi"}], n=2)
    except openai.BadRequestError as error:
        seen["n"] = {"status": error.status_code, "type": error.type}
    try:
        client.chat.completions.create(
            model="rlm", messages=[{"role": "user", "content": "Fail, please."}],
            extra_body={"max_iterations": 1, "limits": {"max_llm_calls": 1}},
        )
    except openai.UnprocessableEntityError as error:
        seen["failed_run"] = {"status": error.status_code, "code": error.code}
    try:
        for _ in client.chat.completions.create(
            model="rlm", messages=[{"role": "user", "content": "Fail, please."}],
            extra_body={"max_iterations": 1, "limits": {"max_llm_calls": 1}}, stream=True,
        ):
            pass
    except openai.APIError as error:
        seen["failed_stream"] = {"code": error.code}
    seen["models"] = [model.id for model in client.models.list()]
    print(json.dumps(seen))


def parsed():
    # Structured outputs as the SDK does them: a pydantic model becomes a strict
    # json_schema response_format, and the reply is parsed back into the model.
    import pydantic

    class Person(pydantic.BaseModel):
        name: str
        age: int

    completion = client.chat.completions.parse(
        model="rlm",
        messages=[{"role": "user", "content": "Who is the oldest?"}],
        response_format=Person,
        extra_body={"context": "Ada, 36\nGrace, 85"},
    )
    message = completion.choices[0].message
    print(json.dumps({
        "id": completion.id,
        "parsed": message.parsed.model_dump(),
        "type": type(message.parsed).__name__,
        "content": message.content,
    }))


{"whole": whole, "streamed": streamed, "errors": errors, "parsed": parsed}[case]()
