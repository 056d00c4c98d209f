"""Events confirmed per second against the fake MetaStudio API, 64 in flight.

Run as ``python bench/bench_confirm.py [--events 2000]`` from the repository root. The fake API
runs in its own process (a threaded stdlib server: it is the bottleneck, so read the figure as
a floor); this process runs the confirmation gate the dispatcher uses, with 64 confirmations in
flight, and reports events confirmed per second and this process's CPU per confirmation.
Confirmation runs in the dispatcher, after the callback is stored and answered: the accept path
does not run any of it.

It runs twice per round, side by side: with the credentials fixed in memory, and with them in a
key file as the server has them (``LiveCredentials``: one ``stat`` of the file per request, to
follow a change), and reports the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callbacks.config import RouteConfig  # noqa: E402
from callbacks.confirm.client import MetaStudioClient  # noqa: E402
from callbacks.confirm.confirmer import MetaStudioConfirmer  # noqa: E402
from callbacks.confirm.credentials import AkSk, Credentials, with_key_file_credentials  # noqa: E402
from callbacks.confirm.gate import ConfirmationGate  # noqa: E402
from callbacks.confirm.live_credentials import LiveCredentials  # noqa: E402
from callbacks.confirm.settings import (  # noqa: E402
    ConfirmationSettings,
    MetaStudioApiSettings,
    RouteConfirmation,
)
from callbacks.events import Envelope, build_event  # noqa: E402
from callbacks.keyfile import KeyFile, write_key_file  # noqa: E402

_FAKE = """
import sys
from callbacks.confirm.testing import FakeMetaStudio
api = FakeMetaStudio(ak="BENCHAK", sk="BENCHSK").start()
for i in range(int(sys.argv[1])):
    api.set_job("video", f"job-{i}", asset_id=f"asset-{i}")
print(api.endpoint, api.project_id, flush=True)
sys.stdin.read()
api.stop()
"""


async def run(
    endpoint: str,
    project: str,
    n: int,
    in_flight: int,
    credentials: Credentials | Callable[[], Credentials],
) -> tuple[float, float, int]:
    route = RouteConfig("ms", "/cb", "metastudio", "https://hooks.example.com/cb", "video", "MSS_A")
    settings = ConfirmationSettings(routes={"ms": RouteConfirmation("required")})
    async with MetaStudioClient(
        endpoint, project, credentials, max_concurrency=in_flight
    ) as client:
        gate = ConfirmationGate(settings, {"ms": MetaStudioConfirmer(client)})
        events = [
            build_event(
                Envelope(f"d{i}", route, None, 0.0),
                {"job_id": f"job-{i}", "result": "SUCCEED", "asset_id": f"asset-{i}"},
            )
            for i in range(n)
        ]
        await gate.screen(events[0])  # connections warm
        limit = asyncio.Semaphore(in_flight)

        async def one(event: object) -> str:
            async with limit:
                return (await gate.screen(event)).action  # type: ignore[arg-type]

        cpu, wall = time.process_time(), time.perf_counter()
        actions = await asyncio.gather(*(one(e) for e in events))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n, sum(a == "deliver" for a in actions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    fake = subprocess.Popen(
        [sys.executable, "-c", _FAKE, str(args.events)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    fixed = AkSk("BENCHAK", "BENCHSK")
    rates: dict[str, list[float]] = {"fixed": [], "key file": []}
    try:
        assert fake.stdout is not None
        endpoint, project = fake.stdout.readline().split()
        with tempfile.TemporaryDirectory() as folder:
            key_file = Path(folder) / "keys.toml"
            write_key_file(key_file, with_key_file_credentials(KeyFile(), fixed))
            live = LiveCredentials(MetaStudioApiSettings(endpoint, project), {}, key_file)
            for _ in range(args.rounds):
                for name, credentials in (("fixed", fixed), ("key file", live)):
                    rate, cpu, confirmed = asyncio.run(
                        run(endpoint, project, args.events, args.in_flight, credentials)
                    )
                    rates[name].append(rate)
                    print(
                        f"{args.events} events, {args.in_flight} in flight, credentials {name}: "
                        f"{rate:.0f} confirmed/s, {cpu * 1000:.2f} ms CPU per confirmation "
                        f"(gate + client), {confirmed} confirmed"
                    )
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        fake.wait(timeout=10)
    ratio = sum(rates["key file"]) / sum(rates["fixed"])
    print(f"key-file credentials / fixed credentials, confirmed/s: {ratio:.2f}")


if __name__ == "__main__":
    main()
