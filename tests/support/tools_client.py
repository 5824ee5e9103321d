"""Drives `strata serve` with the official `openai` and `anthropic` Python clients and checks the
answers with the `jsonschema` package (tests/tools.rs): structured output against eight schemas,
an agent loop with a required tool call, and Anthropic's Messages API, plain, streamed and with a
tool. Every check raises on failure; prints one JSON object of what was seen."""
import json
import sys

import anthropic
import jsonschema
from openai import OpenAI

base = sys.argv[1]
client = OpenAI(base_url=f"{base}/v1", api_key="unused")
seen = {}

SCHEMAS = {
    "flat": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"}},
             "required": ["name", "age"], "additionalProperties": False},
    "nested": {"type": "object", "properties": {
        "person": {"type": "object", "properties": {"first": {"type": "string", "maxLength": 24},
                                                   "last": {"type": "string", "maxLength": 24}},
                   "required": ["first", "last"], "additionalProperties": False},
        "city": {"type": "string", "maxLength": 24}}, "required": ["person", "city"], "additionalProperties": False},
    "array": {"type": "object", "properties": {"colors": {"type": "array", "items": {"type": "string", "maxLength": 12},
                                                          "minItems": 2, "maxItems": 4}},
              "required": ["colors"], "additionalProperties": False},
    "enum": {"type": "object", "properties": {"mood": {"enum": ["happy", "sad", "calm"]}},
             "required": ["mood"], "additionalProperties": False},
    "range": {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                                               "ratio": {"type": "number", "minimum": 0, "maximum": 1}},
              "required": ["score", "ratio"], "additionalProperties": False},
    "optional": {"type": "object", "properties": {"title": {"type": "string", "maxLength": 40},
                                                  "subtitle": {"type": "string", "maxLength": 40},
                                                  "year": {"type": "integer", "minimum": 1900, "maximum": 2100}},
                 "required": ["title"], "additionalProperties": False},
    "list_of_objects": {"type": "object", "properties": {"items": {"type": "array", "maxItems": 3, "items": {
        "type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "qty": {"type": "integer", "minimum": 0}},
        "required": ["name", "qty"], "additionalProperties": False}}}, "required": ["items"], "additionalProperties": False},
    "boolean_and_null": {"type": "object", "properties": {"ok": {"type": "boolean"},
                                                          "note": {"type": ["string", "null"], "maxLength": 40}},
                         "required": ["ok", "note"], "additionalProperties": False},
}

schemas = {}
for name, schema in SCHEMAS.items():
    r = client.chat.completions.create(
        model="any", temperature=0, max_tokens=200,
        messages=[{"role": "user", "content": f"Give an example JSON object ({name.replace('_', ' ')})."}],
        response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
    )
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop", (name, r.choices[0].finish_reason, text)
    value = json.loads(text)  # raises if the output is not JSON
    jsonschema.validate(value, schema)  # raises if it does not validate
    schemas[name] = value
seen["schemas"] = schemas

r = client.chat.completions.create(model="any", temperature=0, max_tokens=200, response_format={"type": "json_object"},
                                   frequency_penalty=1.0,
                                   messages=[{"role": "user", "content": "Describe a cat as JSON: its name and color."}])
assert r.choices[0].finish_reason == "stop", r
assert isinstance(json.loads(r.choices[0].message.content), dict)

# An agent loop: a required call, its result sent back, a final text answer.
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                     "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
# One call per answer: a small model given a list of calls may repeat the call until the limit.
r = client.chat.completions.create(model="any", temperature=0, max_tokens=80, messages=messages,
                                   tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
choice = r.choices[0]
assert choice.finish_reason == "tool_calls", choice
calls = choice.message.tool_calls
assert calls and calls[0].type == "function" and calls[0].function.name == "get_weather", calls
arguments = json.loads(calls[0].function.arguments)
jsonschema.validate(arguments, WEATHER["function"]["parameters"])
seen["call"] = {"name": calls[0].function.name, "arguments": arguments, "id": calls[0].id}

# The same call, streamed: the pieces put together as OpenAI's clients do.
stream = client.chat.completions.create(model="any", temperature=0, max_tokens=80, messages=messages,
                                        tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
                                        stream=True)
parts, finish = {}, None
for chunk in stream:
    for c in chunk.choices:
        for d in c.delta.tool_calls or []:
            p = parts.setdefault(d.index, {"name": "", "arguments": ""})
            p["name"] += (d.function.name or "") if d.function else ""
            p["arguments"] += (d.function.arguments or "") if d.function else ""
        finish = c.finish_reason or finish
assert finish == "tool_calls", finish
assert parts[0]["name"] == "get_weather" and json.loads(parts[0]["arguments"]) == arguments, parts

messages.append({"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]})
messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": json.dumps({"temperature": 18, "sky": "clear"})})
r = client.chat.completions.create(model="any", temperature=0, max_tokens=60, messages=messages,
                                   tools=[WEATHER], tool_choice="none")
final = r.choices[0].message
assert r.choices[0].finish_reason in ("stop", "length") and final.content and not final.tool_calls, r
seen["final"] = final.content
# With `auto`, the model may call again or answer: either is well formed.
r = client.chat.completions.create(model="any", temperature=0, max_tokens=60, messages=messages,
                                   tools=[WEATHER], tool_choice="auto", parallel_tool_calls=False)
choice = r.choices[0]
if choice.message.tool_calls:
    assert choice.finish_reason == "tool_calls"
    jsonschema.validate(json.loads(choice.message.tool_calls[0].function.arguments), WEATHER["function"]["parameters"])
else:
    assert choice.message.content is not None
seen["auto"] = "call" if choice.message.tool_calls else "text"

# Anthropic's Messages API.
claude = anthropic.Anthropic(base_url=base, api_key="unused")
m = claude.messages.create(model="any", max_tokens=24, extra_body={"temperature": 0},
                           messages=[{"role": "user", "content": "What is the capital of France?"}])
assert m.type == "message" and m.role == "assistant" and m.content[0].type == "text", m
assert m.stop_reason in ("end_turn", "max_tokens") and m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m
seen["anthropic"] = m.content[0].text
with claude.messages.stream(model="any", max_tokens=24, extra_body={"temperature": 0},
                            messages=[{"role": "user", "content": "What is the capital of France?"}]) as s:
    streamed = "".join(s.text_stream)
    final_message = s.get_final_message()
assert streamed == m.content[0].text, (streamed, m.content[0].text)
assert final_message.usage.output_tokens == m.usage.output_tokens
tool = {"name": "get_weather", "description": "The current weather in a city",
        "input_schema": WEATHER["function"]["parameters"]}
m = claude.messages.create(model="any", max_tokens=80, extra_body={"temperature": 0}, tools=[tool],
                           tool_choice={"type": "any", "disable_parallel_tool_use": True},
                           messages=[{"role": "user", "content": "What is the weather in Paris?"}])
uses = [b for b in m.content if b.type == "tool_use"]
assert m.stop_reason == "tool_use" and uses and uses[0].name == "get_weather", m
jsonschema.validate(uses[0].input, tool["input_schema"])
m = claude.messages.create(model="any", max_tokens=40, extra_body={"temperature": 0}, tools=[tool],
                           tool_choice={"type": "none"},
                           messages=[{"role": "user", "content": "What is the weather in Paris?"},
                                     {"role": "assistant", "content": m.content},
                                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                                                   "content": "18 degrees, clear"}]}])
assert m.content and m.content[0].type == "text", m
count = claude.messages.count_tokens(model="any", messages=[{"role": "user", "content": "What is the capital of France?"}])
assert count.input_tokens > 0
seen["anthropic_tool"] = uses[0].input

# OpenAI's Responses API, stateless.
resp = client.responses.create(model="any", input="What is the capital of France?", max_output_tokens=24,
                               temperature=0)
assert resp.status in ("completed", "incomplete") and resp.output_text, resp
assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0, resp
streamed, completed = [], None
for event in client.responses.create(model="any", input="What is the capital of France?", max_output_tokens=24,
                                     temperature=0, stream=True):
    if event.type == "response.output_text.delta":
        streamed.append(event.delta)
    elif event.type == "response.completed":
        completed = event.response
assert "".join(streamed) == resp.output_text == completed.output_text, (streamed, resp.output_text)
fn_tool = {"type": "function", **WEATHER["function"]}
resp = client.responses.create(model="any", input="What is the weather in Paris?", tools=[fn_tool],
                               tool_choice="required", parallel_tool_calls=False, max_output_tokens=80, temperature=0)
fcs = [o for o in resp.output if o.type == "function_call"]
assert fcs and fcs[0].name == "get_weather", resp
jsonschema.validate(json.loads(fcs[0].arguments), WEATHER["function"]["parameters"])
resp = client.responses.create(model="any", tools=[fn_tool], tool_choice="none", max_output_tokens=40, temperature=0,
                               input=[{"role": "user", "content": "What is the weather in Paris?"},
                                      {"type": "function_call", "call_id": fcs[0].call_id, "name": "get_weather",
                                       "arguments": fcs[0].arguments},
                                      {"type": "function_call_output", "call_id": fcs[0].call_id,
                                       "output": "18 degrees, clear"}])
assert resp.output_text, resp
try:
    client.responses.create(model="any", input="Hi", previous_response_id="resp_x")
    raise AssertionError("previous_response_id was accepted")
except Exception as e:  # openai.BadRequestError
    assert getattr(e, "status_code", None) == 400 and "stores no responses" in str(e), e
seen["responses"] = resp.output_text

print(json.dumps(seen))
