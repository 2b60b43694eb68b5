#!/usr/bin/env python3
"""A short request arriving behind long ones, against a running `troupe serve` (or any
OpenAI-compatible server): with continuous batching it joins the running batch at the next step and
gets its first token long before the long requests finish.

  deploy/bench/short-behind-long.py URL MODEL [--long 16] [--max-tokens 1024]

Starts --long streaming requests of --max-tokens tokens, sends an 8-token request 0.2 s later, and
prints one JSON object: the short request's time to first token and total time, and how long the
long ones took. Throughput against concurrency is `troupe bench`'s job. Standard library only.
"""
import argparse
import json
import threading
import time
import urllib.request


def stream_completion(url, model, prompt, max_tokens, temperature):
    """Returns (ttft_s, total_s, completion_tokens)."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    ttft, tokens = None, 0
    with urllib.request.urlopen(req, timeout=600) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text") and ttft is None:
                ttft = time.monotonic() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return (ttft if ttft is not None else float("nan")), time.monotonic() - t0, tokens


def short_behind_long(url, model, n_long, max_tokens):
    long_results = []
    threads = [threading.Thread(target=lambda: long_results.append(stream_completion(url, model, "Once upon a time", max_tokens, 0.8)))
               for _ in range(n_long)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.2)
    ttft, total, _ = stream_completion(url, model, "Tom and his dog", 8, 0.8)
    for t in threads:
        t.join()
    return {"long_requests": n_long, "long_max_tokens": max_tokens, "long_wall_s": round(time.monotonic() - t0, 2),
            "short_ttft_ms": round(1000 * ttft, 1), "short_total_ms": round(1000 * total, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("model")
    p.add_argument("--long", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=1024)
    a = p.parse_args()
    print(json.dumps({"url": a.url, "model": a.model, **short_behind_long(a.url, a.model, a.long, a.max_tokens)}, indent=1))


if __name__ == "__main__":
    main()
