"""Load test of `bivec serve`: N concurrent clients for a bounded time, next to in-process encoding.

Starts the server on 127.0.0.1 (a free port) in a subprocess, drives it with 1, 4 and 16
concurrent clients (--clients), each level for --duration seconds (requests in flight at the
deadline still finish), then stops the server and encodes the same texts in-process: one request
per call for --duration seconds, and the texts the busiest level sent in one call (encode's own
batching, whose default texts per pass the server shares).
Texts: both sentences of ../shared/data/sts/sts13.tsv, cycled. Every request carries
--texts-per-request texts. The client shares the CPU with the server; the
load average is printed because other work on the machine skews the numbers.

On a CPU shared with other work, two torch threads can be many times slower than one (threads
wait for each other's time slices); --threads sets the same count for the server and in-process.

Usage: python benchmarks/serve_load.py [--model DIR] [--clients 1,4,16] [--duration 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

from bivec import Encoder
from bivec.evaluation import read_sts_file

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(model: str | None, port: int, extra: list[str], threads: int | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-c", "from bivec.cli import main; main()", "serve", *([model] if model else []),
               "--host", "127.0.0.1", "--port", str(port), "--name", "bench", "--log-level", "warning", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_ready(server: subprocess.Popen, base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}:\n{server.stdout.read()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready after {timeout:.0f} s")


def _batch_stats(base: str) -> tuple[float, float]:
    """(batches, requests in them) so far, from /metrics."""
    values = {}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values["bivec_batch_requests_count"], values["bivec_batch_requests_sum"]


async def _drive(base: str, clients: int, duration: float, requests: list[list[str]]) -> dict:
    """``clients`` loops, each sending the next request as soon as its last one answered."""
    next_request = itertools.cycle(range(len(requests)))
    latencies, errors, sent = [], [], []
    deadline = time.perf_counter() + duration

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            index = next(next_request)
            start = time.perf_counter()
            try:
                response = await http.post("/v1/embeddings", json={"input": requests[index], "model": "bench"})
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                    sent.append(index)
                else:
                    errors.append(f"HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "errors": errors, "sent": sent}


def _row(mode: str, clients: str, seconds: float, requests: int, texts: int, errors: str,
         latencies: list[float] | None, per_batch: str) -> str:
    p50, p99 = (f"{np.percentile(latencies, q) * 1000:.0f}" for q in (50, 99)) if latencies else ("-", "-")
    return (f"| {mode} | {clients} | {seconds:.1f} | {requests} | {texts} | {errors} | {requests / seconds:.1f} | "
            f"{texts / seconds:.1f} | {p50} | {p99} | {per_batch} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/sts/sts13.tsv"))
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level (and per in-process run)")
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the server and the in-process runs (default: torch's choice)")
    parser.add_argument("--server-args", default="", help="extra `bivec serve` options, e.g. '--max-wait-ms 2'")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    if args.duration <= 0 or args.texts_per_request < 1 or min(levels) < 1 or (args.threads or 1) < 1:
        parser.error("--duration, --texts-per-request, --clients and --threads must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    _, first, second = read_sts_file(args.data)
    texts = first + second
    k = args.texts_per_request
    requests = [texts[i : i + k] for i in range(0, len(texts) - k + 1, k)]

    load_before = os.getloadavg()[0]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start_server(args.model, port, args.server_args.split(), args.threads)
    rows, busiest = [], []
    try:
        _wait_ready(server, base, args.startup_timeout)
        probe = httpx.post(f"{base}/v1/embeddings", json={"input": requests[0]}, timeout=120).json()
        for clients in levels:
            batches, merged = _batch_stats(base)
            result = _drive(base, clients, args.duration, requests)
            result = asyncio.run(result)
            batches_after, merged_after = _batch_stats(base)
            per_batch = (merged_after - merged) / max(batches_after - batches, 1)
            n = len(result["latencies"])
            errors = str(len(result["errors"])) + (f" ({result['errors'][0]})" if result["errors"] else "")
            rows.append(_row("server", str(clients), result["seconds"], n, n * k, errors, result["latencies"],
                             f"{per_batch:.2f}"))
            if len(result["sent"]) > len(busiest):
                busiest = result["sent"]
    finally:
        server.terminate()
        server.wait(60)

    encoder = Encoder.from_pretrained(args.model)
    expected = encoder.encode(requests[0], normalize=True)
    difference = np.abs(np.array([d["embedding"] for d in probe["data"]]) - expected).max()
    latencies, count = [], 0
    start = time.perf_counter()
    for index in itertools.cycle(range(len(requests))):
        if time.perf_counter() - start >= args.duration:
            break
        t = time.perf_counter()
        encoder.encode(requests[index], normalize=True)
        latencies.append(time.perf_counter() - t)
        count += 1
    rows.append(_row("in-process, one request per call", "1", time.perf_counter() - start, count, count * k, "0",
                     latencies, "-"))
    same = [text for index in busiest for text in requests[index]]
    start = time.perf_counter()
    encoder.encode(same, normalize=True)
    rows.append(_row("in-process, the busiest level's texts in one call", "-", time.perf_counter() - start,
                     len(busiest), len(same), "0", None, "-"))

    print(f"model: {args.model or 'embedded default'}; {k} text(s) per request; {args.duration:.0f} s per level; "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"max |server - in-process| on one request: {difference:.2e}; "
          f"1-min load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print()
    print("| mode | clients | seconds | requests | texts | errors | requests/s | texts/s | p50 ms | p99 ms | requests/batch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
