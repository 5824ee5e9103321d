"""Sends images to `strata serve` with the official `openai` and `anthropic` Python clients
(tests/multimodal.rs): argv: base URL (…/v1), prompt, image files. Prints one JSON object: the
chat answer (whole, greedy, 24 tokens at most), the same request streamed, the Responses API's
answer and the Messages API's."""
import base64
import json
import sys

from anthropic import Anthropic
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused")
prompt, images = sys.argv[2], sys.argv[3:]
urls = ["data:image/png;base64," + base64.b64encode(open(p, "rb").read()).decode() for p in images]
content = [{"type": "image_url", "image_url": {"url": u}} for u in urls] + [{"type": "text", "text": prompt}]
messages = [{"role": "user", "content": content}]
chat = client.chat.completions.create(model="any", messages=messages, temperature=0, max_tokens=24)
streamed = []
for chunk in client.chat.completions.create(model="any", messages=messages, temperature=0, max_tokens=24, stream=True):
    for choice in chunk.choices:
        if choice.delta.content:
            streamed.append(choice.delta.content)
response = client.responses.create(
    model="any", temperature=0, max_output_tokens=24,
    input=[{"role": "user", "content": [{"type": "input_image", "image_url": u} for u in urls] + [{"type": "input_text", "text": prompt}]}],
)
claude = Anthropic(base_url=sys.argv[1].removesuffix("/v1"), api_key="unused")
blocks = [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": u.split(",", 1)[1]}} for u in urls]
message = claude.messages.create(
    model="any", max_tokens=24, extra_body={"temperature": 0},
    messages=[{"role": "user", "content": blocks + [{"type": "text", "text": prompt}]}],
)
print(json.dumps({
    "chat": chat.choices[0].message.content,
    "usage": {"prompt_tokens": chat.usage.prompt_tokens, "completion_tokens": chat.usage.completion_tokens},
    "stream": "".join(streamed),
    "responses": response.output_text,
    "messages": "".join(b.text for b in message.content if b.type == "text"),
}))
