#!/usr/bin/env python3
"""Load for an OpenAI-compatible server (strata serve or llama-server), standard library only.
Prints one JSON object:

  tg1, tg4       aggregate generation tokens/s with 1 and with 4 concurrent requests of N tokens
                 (end-of-generation ignored, greedy), each request's prompt unique;
  ttft_prompt    seconds to the first streamed token of a fresh 512-token prompt;
  ttft_followup  seconds to the first streamed token of the next turn of that conversation (the
                 server's cache holds the first turn).

Usage: bench_serve.py BASE_URL [--tokens 128] [--prompt-tokens 512]
With --same-as-alone N it instead sends N chat questions alone and then 4 at a time, greedy, and
prints how many answers differ (batch invariance).
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge every boxing match".split()


def post(base, path, body, stream=False):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{path}: {resp.status} {resp.read()[:300]!r}")
    return conn, resp


def completion(base, prompt, n):
    _, resp = post(base, "/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True})
    return json.loads(resp.read())["usage"]["completion_tokens"]


def text_of(n_words, salt):
    # About one token a word for these words; the salt keeps prompts apart (no cache hits).
    return f"{salt}: " + " ".join(WORDS[(i * 7 + salt) % len(WORDS)] for i in range(n_words))


def aggregate(base, clients, n, salt):
    done = [0] * clients
    def run(i):
        done[i] = completion(base, text_of(32, salt + i), n)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def first_token(base, messages):
    start = time.perf_counter()
    conn, resp = post(base, "/v1/chat/completions", {"messages": messages, "max_tokens": 16, "temperature": 0, "stream": True})
    elapsed, text = None, []
    for line in resp:
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        delta = json.loads(line[6:])["choices"]
        if delta and delta[0].get("delta", {}).get("content"):
            elapsed = elapsed or time.perf_counter() - start
            text.append(delta[0]["delta"]["content"])
    conn.close()
    return elapsed, "".join(text)


def ask(base, question):
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}]
    _, resp = post(base, "/v1/chat/completions", {"messages": messages, "max_tokens": 48, "temperature": 0})
    return json.loads(resp.read())["choices"][0]["message"]["content"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--same-as-alone", type=int, default=0)
    a = p.parse_args()
    if a.same_as_alone:
        topics = ["France", "Germany", "Italy", "Spain", "Japan", "Canada", "Egypt", "Peru", "Kenya", "Chile", "Norway", "India"]
        questions = [f"Tell me one fact about {topics[i % len(topics)]} ({i})." for i in range(a.same_as_alone)]
        alone = [ask(a.base, q) for q in questions]
        together = [None] * len(questions)
        for start in range(0, len(questions), 4):
            def run(i):
                together[i] = ask(a.base, questions[i])
            threads = [threading.Thread(target=run, args=(i,)) for i in range(start, min(start + 4, len(questions)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        differ = sum(x != y for x, y in zip(alone, together))
        print(json.dumps({"questions": len(questions), "differ": differ}))
        return
    salt = int(time.time()) % 100000
    completion(a.base, "warm up", 4)
    tg1 = aggregate(a.base, 1, a.tokens, salt)
    tg4 = aggregate(a.base, 4, a.tokens, salt + 10)
    first = [{"role": "user", "content": text_of(a.prompt_tokens - 12, salt + 20)}]
    ttft_prompt, answer = first_token(a.base, first)
    follow = first + [{"role": "assistant", "content": answer}, {"role": "user", "content": "Say that again, shorter."}]
    ttft_followup, _ = first_token(a.base, follow)
    print(json.dumps({"tg1": tg1, "tg4": tg4, "ttft_prompt": ttft_prompt, "ttft_followup": ttft_followup}))


main()
