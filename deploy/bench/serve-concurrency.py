#!/usr/bin/env python3
"""Continuous batching against a running `troupe serve` (or any OpenAI-compatible server).

  deploy/bench/serve-concurrency.py URL MODEL [--concurrency 1,16,64] [--requests-per-client 4]
                                    [--max-tokens 128]

For each concurrency C, C clients each send requests back to back (streaming, usage included) and
the aggregate generated tokens/s and the mean time to first token are measured. Then 16 long
requests run and a short one arrives behind them: its time to first token is compared with how
long the long ones take. Prints one JSON object. Standard library only; loopback targets only.
An interim tool until `troupe bench` (issue 4) lands.
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


def run_level(url, model, concurrency, per_client, max_tokens):
    results, lock = [], threading.Lock()

    def client(i):
        for r in range(per_client):
            res = stream_completion(url, model, f"Once upon a time, story {i}-{r}:", max_tokens, 0.8)
            with lock:
                results.append(res)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    tokens = sum(r[2] for r in results)
    return {"concurrency": concurrency, "requests": len(results), "output_tokens": tokens,
            "output_tok_s": round(tokens / wall, 1), "mean_ttft_ms": round(1000 * sum(r[0] for r in results) / len(results), 1),
            "wall_s": round(wall, 2)}


def short_behind_long(url, model, max_tokens):
    long_results = []
    threads = [threading.Thread(target=lambda: long_results.append(stream_completion(url, model, "Once upon a time", max_tokens, 0.8)))
               for _ in range(16)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.2)
    ttft, total, _ = stream_completion(url, model, "Tom and his dog", 8, 0.8)
    for t in threads:
        t.join()
    return {"long_requests": 16, "long_max_tokens": max_tokens, "long_wall_s": round(time.monotonic() - t0, 2),
            "short_ttft_ms": round(1000 * ttft, 1), "short_total_ms": round(1000 * total, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("model")
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--requests-per-client", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=128)
    a = p.parse_args()
    levels = [run_level(a.url, a.model, int(c), a.requests_per_client, a.max_tokens) for c in a.concurrency.split(",")]
    base = levels[0]["output_tok_s"]
    for lv in levels:
        lv["vs_first"] = round(lv["output_tok_s"] / base, 2)
    print(json.dumps({"url": a.url, "model": a.model, "max_tokens": a.max_tokens, "levels": levels,
                      "short_behind_long": short_behind_long(a.url, a.model, 8 * a.max_tokens)}, indent=1))


if __name__ == "__main__":
    main()
