#!/usr/bin/env python3
"""Memory soak: many generation requests against one `troupe serve`, with its RSS after each round.

  deploy/bench/soak.py TROUPE_BIN MODEL [--requests 100000] [--round 10000] [--clients 8] [--kv-mb 16]

Starts `TROUPE_BIN serve --model MODEL --kv-mb KV --threads 1` on a free loopback port, then sends
rounds of requests from --clients threads, one third each: completed (not streamed), streamed to the
end, and cancelled (streamed; the client hangs up after the first event). After each round it reads
the server's VmRSS from /proc. Prints one JSON object: RSS per round, the growth after the first
(warm-up) round in MiB and in bytes per request, and the requests that failed. Standard library only.
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def one_request(port, model, kind, i):
    """True when the request went as its kind means it to."""
    body = {"model": model, "prompt": f"Once upon a time {i % 97}", "max_tokens": 4, "temperature": 0}
    if kind != "completed":
        body["stream"] = True
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return False
        if kind == "cancelled":
            resp.fp.readline()  # the first event's line, then hang up mid-stream
            conn.sock.shutdown(socket.SHUT_RDWR)
            return True
        data = resp.read()
        return b"[DONE]" in data if kind == "streamed" else b"choices" in data
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def run_round(port, model, n, clients, start):
    failed = [0]
    lock = threading.Lock()
    kinds = ("completed", "streamed", "cancelled")

    def worker(w):
        for i in range(start + w, start + n, clients):
            if not one_request(port, model, kinds[i % 3], i):
                with lock:
                    failed[0] += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("troupe")
    ap.add_argument("model")
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--round", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--kv-mb", type=int, default=16)
    args = ap.parse_args()

    name = os.path.splitext(os.path.basename(args.model))[0]
    server = subprocess.Popen([args.troupe, "serve", "--model", args.model, "--port", "0", "--threads", "1",
                               "--kv-mb", str(args.kv_mb)], stderr=subprocess.PIPE, text=True)
    port = None
    for line in server.stderr:
        m = re.search(r"listening on http://[0-9.]+:([0-9]+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        sys.exit("the server did not start")
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep its pipe drained

    rounds, failed, sent = [], 0, 0
    t0 = time.monotonic()
    while sent < args.requests:
        n = min(args.round, args.requests - sent)
        failed += run_round(port, name, n, args.clients, sent)
        sent += n
        rounds.append({"requests": sent, "rss_mib": round(rss_mib(server.pid), 2),
                       "seconds": round(time.monotonic() - t0, 1)})
        print(json.dumps(rounds[-1]), file=sys.stderr)
    server.terminate()
    server.wait(timeout=60)

    warm = rounds[0]
    growth = rounds[-1]["rss_mib"] - warm["rss_mib"]
    after = rounds[-1]["requests"] - warm["requests"]
    print(json.dumps({
        "model": name, "kv_mb": args.kv_mb, "clients": args.clients, "requests": sent, "failed": failed,
        "rounds": rounds,
        "growth_after_warmup_mib": round(growth, 2),
        "growth_bytes_per_request": round(growth * 1048576 / after, 1) if after else None,
    }, indent=2))


if __name__ == "__main__":
    main()
