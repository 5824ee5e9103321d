"""Drives `strata serve` with the official `openai` Python client (tests/server.rs). Prints one
JSON object: the model list, a chat answer, the same chat streamed, and a raw completion."""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused")
messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
chat = client.chat.completions.create(model="any", messages=messages, temperature=0, max_tokens=32)
stream = client.chat.completions.create(
    model="any", messages=messages, temperature=0, max_tokens=32, stream=True, stream_options={"include_usage": True}
)
streamed, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            streamed.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
completion = client.completions.create(model="any", prompt="The sky is", max_tokens=8, temperature=0)


def counts(u):
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


print(json.dumps({
    "models": [m.id for m in client.models.list().data],
    "chat": {"content": chat.choices[0].message.content, "finish_reason": chat.choices[0].finish_reason, "usage": counts(chat.usage)},
    "stream": {"content": "".join(streamed), "finish_reason": finish, "usage": counts(usage)},
    "completion": {"text": completion.choices[0].text, "usage": counts(completion.usage)},
}))
