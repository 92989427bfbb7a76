"""Benchmark of /v1/predict under gunicorn beside a bare Flask hello-world under the same
gunicorn settings, at a fixed number of connections on 127.0.0.1.

    python -m server.bench [--duration 10] [--connections 8] [--workers N]

Uses wrk when installed (Debian: apt-get install wrk), else a bounded Python load generator.
Writes results/bench/server.md and results/bench/server.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from flask import Flask

REPO = Path(__file__).resolve().parents[1]
QUERY = "/v1/predict?n_params=7e9&tokens=2e12"
# Varied queries: every request a new N, so the answer cache does not help.
WRK_VARIED = """
local counter = 0
request = function()
  counter = counter + 1
  local n = 1e6 * (1 + (counter * 7919 % 100003) / 10)
  -- plain digits: a "+" of an exponent would arrive as a space
  return wrk.format("GET", string.format("/v1/predict?n_params=%.0f&tokens=2e12", n))
end
"""


def hello_app() -> Flask:
    """The baseline: the least a Flask app can do per request."""
    app = Flask("hello")

    @app.get("/")
    def hello():
        return "Hello, World!"

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """One gunicorn process with the repository's config, on a free local port."""

    def __init__(self, app: str, workers: int, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **(env or {}),
            "SCALING_BIND": f"127.0.0.1:{self.port}",
            "SCALING_WORKERS": str(workers),
            "SCALING_LOG_LEVEL": "warning",
            "PYTHONPATH": str(REPO),
        }
        self.app = app

    def __enter__(self) -> Gunicorn:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "server/gunicorn.conf.py", self.app],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _ = get(self.port, "/")
                if status < 500:
                    return self
            except OSError:
                time.sleep(0.2)
            if self.process.poll() is not None:
                break
        self.__exit__()
        raise RuntimeError(f"gunicorn {self.app} did not start")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(port: int, path: str, connections: int, duration: float, script: str | None) -> dict:
    command = [
        "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration:g}s",
        "--latency", "--timeout", "5s",
    ]  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script or "")
    if script:
        command += ["-s", lua.name]
    try:
        out = subprocess.run(
            [*command, f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, timeout=duration + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(lua.name)

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * _UNITS[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": requests,
        "throughput_rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


def run_python(port: int, path: str, connections: int, duration: float, varied: bool) -> dict:
    """Fallback load generator: one thread per connection, bounded by time and count."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + duration
    max_requests = 200_000

    def worker(offset: int) -> None:
        mine, i = [], offset
        while time.monotonic() < stop and len(mine) < max_requests // connections:
            i += connections
            url = f"/v1/predict?n_params={1e6 * (1 + i % 100003 / 10):.0f}&tokens=2e12"
            start = time.perf_counter()
            status, _ = get(port, url if varied else path)
            mine.append((time.perf_counter() - start) * 1e3)
            if status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "non_2xx": errors[0],
        "socket_errors": "none",
    }


def median_of(runs: list[dict]) -> dict:
    """Per-key median over rounds (requests and errors summed)."""
    out = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if key in ("requests", "non_2xx"):
            out[key] = sum(values)
        elif isinstance(values[0], (int, float)):
            out[key] = statistics.median(values)
        else:
            out[key] = "; ".join(sorted(set(map(str, values))))
    return out


def hot_path_us(repeats: int = 2000) -> dict:
    """In-process cost of one prediction with and without the answer cache (microseconds)."""
    from . import create_app

    app = create_app()
    laws = app.extensions["scaling_laws"]
    client = app.test_client()
    timings = {}
    for name, call in {
        "law.predict (no cache)": lambda i: laws._predict(laws.default, 7e9 * (1 + i / 1e6), 2e12),
        "registry.predict (cached)": lambda i: laws.predict(laws.default, 7e9, 2e12),
        "GET /v1/predict via test client (cached)": lambda i: client.get(QUERY),
    }.items():
        call(0)
        start = time.perf_counter()
        for i in range(repeats):
            call(i)
        timings[name] = (time.perf_counter() - start) / repeats * 1e6
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m server.bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--workers", type=int, default=None, help="gunicorn workers (default: the config's)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (median kept)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args(argv)

    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk"))
    workers = args.workers or int(
        os.environ.get("SCALING_WORKERS") or min(os.cpu_count() + 1, 8)
    )  # the same default as server/gunicorn.conf.py

    def measure(port: int, path: str, varied: bool = False) -> dict:
        warm = min(2.0, args.duration)
        if use_wrk:
            run_wrk(port, path, args.connections, warm, WRK_VARIED if varied else None)
            return run_wrk(
                port, path, args.connections, args.duration, WRK_VARIED if varied else None
            )
        run_python(port, path, args.connections, warm, varied)
        return run_python(port, path, args.connections, args.duration, varied)

    # Both servers run side by side and are measured in alternation, round after round, so
    # that load from other processes on the machine falls on both alike.
    rounds: dict[str, list[dict]] = {
        "hello_world": [], "predict_same_query": [], "predict_varied_queries": []
    }  # fmt: skip
    with (
        Gunicorn("server.bench:hello_app()", workers) as hello,
        Gunicorn("server:create_app()", workers) as service,
    ):
        status, body = get(service.port, QUERY)
        if status != 200:
            raise RuntimeError(f"{QUERY} answered {status}: {body[:200]!r}")
        answer = json.loads(body)
        for _ in range(args.rounds):
            rounds["hello_world"].append(measure(hello.port, "/"))
            rounds["predict_same_query"].append(measure(service.port, QUERY))
            rounds["predict_varied_queries"].append(measure(service.port, QUERY, varied=True))

    results = {name: median_of(runs) for name, runs in rounds.items()}
    hello_rps = results["hello_world"]["throughput_rps"]
    for name in ("predict_same_query", "predict_varied_queries"):
        results[name]["vs_hello_world"] = results[name]["throughput_rps"] / hello_rps
    report = {
        "load_generator": "wrk" if use_wrk else "python threads",
        "connections": args.connections,
        "duration_s": args.duration,
        "gunicorn_workers": workers,
        "worker_class": "sync",
        "query": QUERY,
        "law": answer["law"],
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "results": results,
        "per_round": rounds,
        "hot_path_us": hot_path_us(),
        "targets": {"throughput_vs_hello_world": ">= 0.5", "p99_ms": "<= 10 at 8 connections"},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "server.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "server.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [
        "# /v1/predict under gunicorn, beside a bare Flask hello-world",
        "",
        f"`python -m server.bench` on {report['measured_at']}: {report['load_generator']}, "
        f"{report['connections']} connections, {report['duration_s']:g} s per measurement "
        f"(after a warm-up), {report['rounds']} alternating rounds (medians; requests summed), "
        f"gunicorn {report['gunicorn_workers']} {report['worker_class']} "
        f"workers with server/gunicorn.conf.py, {report['cpu_count']} CPUs "
        f"({report['platform']}). Query `{report['query']}` (law `{report['law']}`).",
        "",
        "| app | requests | throughput (req/s) | vs hello-world | p50 (ms) | p99 (ms) | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["results"].items():
        ratio = f"{r['vs_hello_world']:.2f}" if "vs_hello_world" in r else "1.00"
        lines.append(
            f"| {name} | {r['requests']} | {r['throughput_rps']:.0f} | {ratio} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} |"
        )
    lines += [
        "",
        "Targets: throughput >= 0.5 x hello-world, p99 <= 10 ms at 8 connections. "
        "`predict_same_query` is served from the per-process answer cache after the first "
        "request; `predict_varied_queries` asks a new N every request, so every answer is "
        "computed by the law.",
        "",
        "In-process cost per call (microseconds):",
        "",
    ]
    lines += [f"- {name}: {us:.1f}" for name, us in report["hot_path_us"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
