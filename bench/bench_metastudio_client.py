"""The MetaStudio client, ours (httpx + our signer) against the official SDK, side by side.

Run as ``python bench/bench_metastudio_client.py [--requests 400]`` from the repository root
(needs ``.[test]``, which brings the SDK). The fake API runs in its own process, so its CPU is not
counted; each client runs in a fresh process of its own and reports:

- import: wall time to import the client and the peak RSS it adds, on top of ``callbacks``;
- CPU per query: process CPU (user + system) over ``--requests`` sequential queries, divided;
- 64 in flight: ``--requests`` queries with 64 awaited at once (the SDK's async client answers a
  blocking future from its 8-thread pool; asyncio waits for it in a thread), wall-clock
  queries per second.

Compare the two clients of one run with each other, never with another run's figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AK, SK = "BENCHAK", "BENCHSK"

_FAKE = """
import sys, time
from callbacks.confirm.testing import FakeMetaStudio
api = FakeMetaStudio(ak="BENCHAK", sk="BENCHSK").start()
api.set_job("video", "job-1", asset_id="asset-1")
print(api.endpoint, api.project_id, flush=True)
sys.stdin.read()
api.stop()
"""

_OURS = """
import asyncio, json, resource, sys, time
endpoint, project, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import callbacks  # the receiver is loaded already: count only what the client adds
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
from callbacks.confirm.client import MetaStudioClient
from callbacks.confirm.credentials import AkSk
import_s = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
async def main():
    creds = AkSk("BENCHAK", "BENCHSK")
    async with MetaStudioClient(endpoint, project, creds, max_concurrency=64) as c:
        await c.job("video", "job-1")
        c0 = time.process_time()
        for _ in range(n):
            await c.job("video", "job-1")
        cpu = (time.process_time() - c0) / n
        t = time.perf_counter()
        await asyncio.gather(*(c.job("video", "job-1") for _ in range(n)))
        qps = n / (time.perf_counter() - t)
    return cpu, qps
cpu, qps = asyncio.run(main())
print(json.dumps({"import_ms": import_s * 1000, "rss_mib": rss / 1024,
                  "cpu_ms": cpu * 1000, "qps64": qps}))
"""

_SDK = """
import asyncio, json, resource, sys, time
endpoint, project, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import callbacks  # the receiver is loaded already: count only what the client adds
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkmetastudio.v1 import MetaStudioAsyncClient, Show2DDigitalHumanVideoRequest
import_s = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
client = (MetaStudioAsyncClient.new_builder()
          .with_credentials(BasicCredentials("BENCHAK", "BENCHSK", project))
          .with_endpoints([endpoint]).build())
req = Show2DDigitalHumanVideoRequest(job_id="job-1")
async def one():
    # The SDK's "async" answer is a blocking future of a future: waiting needs a thread.
    return await asyncio.to_thread(client.show2_d_digital_human_video_async(req).result)
async def main():
    await one()
    c0 = time.process_time()
    for _ in range(n):
        await one()
    cpu = (time.process_time() - c0) / n
    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    qps = n / (time.perf_counter() - t)
    return cpu, qps
cpu, qps = asyncio.run(main())
print(json.dumps({"import_ms": import_s * 1000, "rss_mib": rss / 1024,
                  "cpu_ms": cpu * 1000, "qps64": qps}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    fake = subprocess.Popen(
        [sys.executable, "-c", _FAKE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout is not None
        endpoint, project = fake.stdout.readline().split()
        results = {}
        for name, code in (("ours (httpx)", _OURS), ("official SDK", _SDK)):
            out = subprocess.run(
                [sys.executable, "-c", code, endpoint, project, str(args.requests)],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        fake.wait(timeout=10)
    print(f"{'client':<14} {'import ms':>10} {'+RSS MiB':>8} {'CPU ms/query':>13} {'q/s @64':>8}")
    for name, r in results.items():
        print(
            f"{name:<14} {r['import_ms']:>10.0f} {r['rss_mib']:>8.0f} {r['cpu_ms']:>13.2f} "
            f"{r['qps64']:>8.0f}"
        )
    ours, sdk = results["ours (httpx)"], results["official SDK"]
    print(
        f"ratio SDK/ours: CPU per query {sdk['cpu_ms'] / ours['cpu_ms']:.2f}x, "
        f"import {sdk['import_ms'] / ours['import_ms']:.1f}x"
    )
    time.sleep(0)


if __name__ == "__main__":
    main()
