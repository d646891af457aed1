"""HTTP service under load: requests/s and latency with K concurrent clients, batching on and off.

Starts ``faceverify serve`` (a real uvicorn process on 127.0.0.1) once with the dynamic
batcher and once without (``--no-batching``: one forward pass per request), and for
K = 1, 8, 32 concurrent clients measures ``POST /v1/verify`` (two images) and
``POST /v1/galleries/{g}/identify`` (one image against a gallery) by a bounded number
of requests. Every answer must be a 200. Then two writers enrol different people at
the same time through the API, and the gallery must hold every one of them. The
server's resident memory is read before and after the load.

The network is ConvNeXt-Atto with random weights (the speed is the same as trained
ones) on generated face-sized images; clients run in this process, on the same
machine, so they take some CPU from the server: compare the rows with each other.

Run:  python benchmarks/service_load.py [--backend torch|onnxruntime] [--threads 1] [--clients 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from faceverify.runtime import BACKENDS

ENROLLED = 20


@dataclass
class Row:
    endpoint: str
    batching: str
    clients: int
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    passes: float

    def cells(self) -> list[str]:
        p50, p99 = np.percentile(self.latencies, [50, 99])
        return [
            self.endpoint,
            self.batching,
            str(self.clients),
            str(self.requests),
            f"{self.requests / self.seconds:.1f}",
            f"{p50 * 1000:.0f}",
            f"{p99 * 1000:.0f}",
            f"{self.passes / self.requests:.2f}",
            str(self.errors),
        ]


def face_png(person: int, shot: int, size: int = 112) -> bytes:
    """A face-sized image: a person's base pattern plus per-shot noise."""
    base = np.random.default_rng(1000 + person).integers(0, 256, (size, size, 3)).astype(float)
    noise = np.random.default_rng(person * 100 + shot).normal(0, 30, base.shape)
    stream = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(stream, "PNG")
    return stream.getvalue()


def random_weights(folder: Path) -> Path:
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False)
    path = folder / "convnext_atto.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    folder: Path, weights: Path, args: argparse.Namespace, batching: bool
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "faceverify", "serve", "-q", "--port", str(port)]
    # no keys: a throwaway server on 127.0.0.1 (a key check is one SHA-256 per request)
    command += ["--db", str(folder / "galleries"), "--insecure"]
    command += ["--weights", str(weights), "--input-size", str(args.input_size), "--device", "cpu"]
    command += ["--threads", str(args.threads)] if args.threads else []
    command += ["--backend", args.backend]
    command += [] if batching else ["--no-batching"]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        time.sleep(0.25)
    server.kill()
    raise SystemExit("the server did not become ready within 120 s")


def forward_passes(base: str) -> float:
    """Forward passes the server has run so far (its batch-size histogram's count)."""
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("faceverify_batch_images_count "):
            return float(line.split()[-1])
    return 0.0


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(
    base: str, path: str, files: dict[str, tuple[str, bytes]], clients: int, total: int
) -> tuple[float, list[float], int]:
    """``total`` requests from ``clients`` concurrent clients; (seconds, latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    left = total

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            response = await http.post(path, files=files)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        await http.post(path, files=files)  # warm-up, not counted
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - started, latencies, errors


async def two_writers(base: str) -> tuple[int, int]:
    """Two clients enrol 10 different people each at once; returns (expected, found)."""

    async def writer(http: httpx.AsyncClient, people: range) -> None:
        for person in people:
            files = [("images", (f"{s}.png", face_png(person, s))) for s in range(2)]
            response = await http.post("/v1/galleries/bench/people", data={"name": f"w{person}"}, files=files)
            assert response.status_code == 201, response.text

    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        await asyncio.gather(writer(http, range(100, 110)), writer(http, range(200, 210)))
        people = (await http.get("/v1/galleries/bench/people")).json()
    found = sum(1 for p in people if p["name"].startswith("w") and p["faces"] == 2)
    return 20, found


def enrol_gallery(base: str) -> None:
    with httpx.Client(base_url=base, timeout=120) as http:
        assert http.post("/v1/galleries", json={"name": "bench"}).status_code == 201
        for person in range(ENROLLED):
            files = [("images", (f"{s}.png", face_png(person, s))) for s in range(2)]
            assert (
                http.post("/v1/galleries/bench/people", data={"name": f"p{person}"}, files=files).status_code
                == 201
            )


def run_mode(args: argparse.Namespace, weights: Path, batching: bool) -> tuple[list[Row], str]:
    label = "on" if batching else "off"
    with tempfile.TemporaryDirectory(prefix="faceverify-load-") as tmp:
        server, base = start_server(Path(tmp), weights, args, batching)
        try:
            enrol_gallery(base)
            before = resident_mib(server.pid)
            rows = []
            verify_files = {"a": ("a.png", face_png(1, 7)), "b": ("b.png", face_png(1, 8))}
            identify_files = {"image": ("probe.png", face_png(3, 9))}
            for clients in args.clients:
                for endpoint, path, files in (
                    ("verify", "/v1/verify", verify_files),
                    ("identify", "/v1/galleries/bench/identify", identify_files),
                ):
                    total = max(args.min_requests, clients * args.requests_per_client)
                    passes = forward_passes(base)
                    seconds, latencies, errors = asyncio.run(load(base, path, files, clients, total))
                    passes = forward_passes(base) - passes - 1  # less the warm-up request
                    rows.append(
                        Row(endpoint, label, clients, len(latencies), seconds, latencies, errors, passes)
                    )
                    print("  " + " | ".join(rows[-1].cells()), file=sys.stderr)
            after = resident_mib(server.pid)
            expected, found = asyncio.run(two_writers(base))
            note = (
                f"batching {label}: server RSS {before:.0f} MiB before the load, {after:.0f} MiB after; "
                f"two concurrent writers enrolled {found} of {expected} people"
            )
        finally:
            server.terminate()
            server.wait(30)
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input-size", type=int, default=112, help="network input side (112)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--threads", type=int, help="the server's CPU threads for the network (torch's default)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="the server's runtime (torch)",
    )
    parser.add_argument("--requests-per-client", type=int, default=6, help="requests per client (6)")
    parser.add_argument("--min-requests", type=int, default=30, help="requests per cell at least (30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_weights(Path(tmp))
        results = [run_mode(args, weights, batching) for batching in (True, False)]
    rows = [row for mode_rows, _ in results for row in mode_rows]
    header = ["endpoint", "batching", "K", "requests", "req/s", "p50 ms", "p99 ms", "passes/req", "errors"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in sorted(rows, key=lambda r: (r.endpoint, r.clients, r.batching != "on")):
        print("| " + " | ".join(row.cells()) + " |")
    print()
    for endpoint in ("verify", "identify"):
        for clients in args.clients:
            on, off = (
                next(r for r in rows if (r.endpoint, r.clients, r.batching) == (endpoint, clients, mode))
                for mode in ("on", "off")
            )
            ratio = (on.requests / on.seconds) / (off.requests / off.seconds)
            print(f"{endpoint} K={clients}: batching gives {ratio:.2f}x the requests/s")
    for _, note in results:
        print(note)
    threads = args.threads or "default"
    print(f"(cpu cores: {os.cpu_count()}; {args.backend}; network threads: {threads}; {args.input_size} px)")


if __name__ == "__main__":
    main()
