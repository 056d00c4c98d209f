"""Where the time goes in the live server under wrk load, layer by layer: bare app against receiver.

Run as ``python bench/bench_live.py [--duration 8] [--connections 64] [--rounds 2] [--strace]``
from the repository root. Needs wrk and py-spy (``pip install -e '.[bench]'``; it reads the server's
stacks with ptrace, so it may need root or ``kernel.yama.ptrace_scope=0``); ``--strace`` also
needs strace.

For each server (bench/bare_app.py, the receiver accepting signed callbacks into SQLite as in
bench_receiver.py's (b1), and the receiver rejecting a forged flood), one uvicorn worker:

1. wrk warms it up, then loads it for ``--duration`` seconds while py-spy samples every thread's
   Python stack (``--full-filenames --threads``, idle samples left out) and /proc gives each
   thread's CPU time. The event-loop thread's CPU per request is split over the layers below in
   proportion to its samples; the other threads (the SQLite commit thread) are reported whole.
   py-spy stops the process for each sample (its default). With ``--nonblocking`` it reads the
   stacks of a running process and drops the samples it catches mid-change, which are mostly
   those in Python code: on the receiver it kept 813 of ~2,000 loop-thread samples and put 22 %
   of them in the SQLite INSERT, against 1,868 kept and 10 % stopped, and 20 µs a row timed in
   the process itself. Stopping slows the server by about a fifth while it is profiled; the CPU
   per request it splits is measured in the same run.
   Context switches per request (voluntary: a thread waited, e.g. the commit thread for its
   fsync or the loop for its poll; involuntary: preempted) come from /proc under a separate 2 s
   load before that, as py-spy and strace stop the process and each stop is a switch.
2. With ``--strace``, a second, shorter load under ``strace -c -f`` counts system calls per
   request: ``epoll_wait`` per request is event-loop iterations per request, ``futex`` the
   cross-thread wake-ups, ``fdatasync``/``fsync`` the commits. strace slows the server a lot, so
   only the counts per request mean anything, not its times.

A sample is put in the layer of the innermost frame that matches a rule (walking from the leaf
towards the root), so e.g. structlog called from the receiver counts as "log line" and Starlette's
body reading called from the receiver as "Starlette request/response". Samples with no frame of
the project or of those libraries are the server stack: uvicorn, httptools, uvloop/asyncio, and
the socket calls.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

from bench_receiver import (  # noqa: E402
    CALLBACK_PATH,
    PUBLIC_URL,
    Server,
    body_template,
    die,
    probe,
    run_wrk,
    start_bare,
    start_receiver,
    uptime_line,
    wrk_command,
)

from verify.sensetime import generate_auth_key, sign  # noqa: E402

# (substring of a frame's file path, layer), tried innermost frame first.
RULES: list[tuple[str, str]] = [
    # uvicorn's send() called through Starlette's send wrappers: the server writing the answer.
    ("/uvicorn/", "server stack: uvicorn, httptools, asyncio, sockets"),
    ("/structlog/", "log line"),
    ("callbacks/logs.py", "log line"),
    ("/prometheus_client/", "metrics"),
    ("callbacks/metrics.py", "metrics"),
    ("/verify/", "verify signature"),
    ("callbacks/dedupe.py", "dedupe digest"),
    ("callbacks/events.py", "event class"),
    ("callbacks/store/group_commit.py", "store: group commit"),
    ("callbacks/store/", "store: SQLite statements"),
    ("callbacks/dispatcher.py", "dispatcher"),
    ("callbacks/handlers.py", "dispatcher"),
    ("callbacks/sinks/", "dispatcher"),
    ("callbacks/intake.py", "intake"),
    ("callbacks/receiver.py", "receiver: parse, answer"),
    ("bare_app.py", "bare app: json.loads"),
    ("/starlette/", "Starlette request/response"),
    ("callbacks/app.py", "routing"),
]
SERVER_STACK = "server stack: uvicorn, httptools, asyncio, sockets"
LAYERS = [layer for _, layer in RULES if layer != "dispatcher"] + ["dispatcher", SERVER_STACK]
LAYERS = list(dict.fromkeys(LAYERS))


def layer_of(stack: str) -> str:
    frames = stack.split(";")[1:]  # the first element names the thread
    for frame in reversed(frames):
        for needle, layer in RULES:
            if needle in frame:
                return layer
    return SERVER_STACK


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid``, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def context_switches(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches of every thread of ``pid`` so far."""
    voluntary = involuntary = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name == "voluntary_ctxt_switches":
                voluntary += int(value)
            elif name == "nonvoluntary_ctxt_switches":
                involuntary += int(value)
    return voluntary, involuntary


def profile(
    kind: str, args: argparse.Namespace, workdir: Path, secret: str, rnd: int
) -> dict[str, float]:
    """µs per request of each layer on the loop thread, plus 'other threads' and the rps."""
    run_dir = workdir / f"{kind}-{rnd}"
    run_dir.mkdir()
    timestamp = int(time.time())
    signature = sign(PUBLIC_URL, timestamp, secret if kind != "forged" else "Forged0" + secret[:9])
    template = body_template(timestamp, signature)
    template_path = run_dir / "body.json"
    template_path.write_text(template, encoding="utf-8")
    server: Server = (
        start_bare(run_dir, 1) if kind == "bare" else start_receiver(run_dir, secret, 1)
    )
    try:
        server.wait_healthy()
        probe(server.port, template, 401 if kind == "forged" else 200)
        url = server.base_url + CALLBACK_PATH
        run_wrk(wrk_command(url, template_path, f"w{rnd}{kind}", args.connections, 2))
        # Context switches under load that neither py-spy nor strace disturbs (both stop the
        # process, each stop a switch): a second warm load of its own.
        switches_before = context_switches(server.proc.pid)
        warm, _ = run_wrk(wrk_command(url, template_path, f"c{rnd}{kind}", args.connections, 2))
        switches = [
            (n - b) / max(int(warm["requests"]), 1)
            for n, b in zip(context_switches(server.proc.pid), switches_before, strict=True)
        ]
        raw = run_dir / "pyspy.txt"
        spy = subprocess.Popen(
            [
                shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(server.proc.pid),
                "--duration",
                str(args.duration),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--full-filenames",
                "--threads",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.3)
        before = thread_cpu(server.proc.pid)
        stats, _ = run_wrk(
            wrk_command(url, template_path, f"m{rnd}{kind}", args.connections, args.duration)
        )
        after = thread_cpu(server.proc.pid)
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0 or not raw.exists():
            die(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-1000:]}")
        strace = strace_counts(server, url, template_path, args, rnd, kind) if args.strace else {}
    finally:
        server.stop()
    requests = int(stats["requests"])
    loop_tid = server.proc.pid
    loop_cpu = after.get(loop_tid, 0.0) - before.get(loop_tid, 0.0)
    others = sum(after[t] - before.get(t, 0.0) for t in after if t != loop_tid)
    samples: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if f"({loop_tid})" not in stack.split(";", 1)[0]:
            continue
        samples[layer_of(stack)] += int(count)
    total = sum(samples.values()) or 1
    loop_us = loop_cpu / max(requests, 1) * 1e6
    result = {layer: loop_us * n / total for layer, n in samples.items()}
    result["loop thread total"] = loop_us
    result["other threads (commit thread)"] = others / max(requests, 1) * 1e6
    result["req/s"] = requests / (stats["duration_us"] / 1e6)
    result["context switches/req: voluntary"] = switches[0]
    result["context switches/req: involuntary"] = switches[1]
    for name, per_request in strace.items():
        result[f"syscalls/req: {name}"] = per_request
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def strace_counts(
    server: Server, url: str, template: Path, args: argparse.Namespace, rnd: int, kind: str
) -> dict[str, float]:
    """System calls per request of every thread of the server, under a shorter wrk load."""
    out = template.with_name("strace.txt")
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-o", str(out), "-p", str(server.proc.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    stats, _ = run_wrk(wrk_command(url, template, f"s{rnd}{kind}", args.connections, 3))
    tracer.terminate()
    tracer.wait(timeout=30)
    requests = max(int(stats["requests"]), 1)
    counts: dict[str, float] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        # "% time seconds usecs/call calls [errors] syscall"
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3]) / requests
    counts["total"] = sum(counts.values())
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds of profiled load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="profiled runs per server")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--strace", action="store_true", help="also count system calls")
    parser.add_argument("--keep", action="store_true", help="keep the raw profiles")
    args = parser.parse_args()
    for tool in ("wrk", *(["strace"] if args.strace else [])):
        if shutil.which(tool) is None:
            die(f"{tool} is not installed")
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        die("py-spy is not installed (pip install py-spy)")

    print(f"# bench_live: {os.cpu_count()} CPUs; {uptime_line()}")
    secret = generate_auth_key()
    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    kinds = ("bare", "receiver", "forged")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    try:
        for rnd in range(args.rounds):
            for kind in kinds:
                runs[kind].append(profile(kind, args, workdir, secret, rnd))
                print(
                    f"  round {rnd + 1} ({kind}): {runs[kind][-1]['req/s']:,.0f} req/s", flush=True
                )
    finally:
        if args.keep:
            print(f"# kept the raw profiles in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs[kind])

    keys = [
        *LAYERS,
        "loop thread total",
        "other threads (commit thread)",
        "req/s",
        "context switches/req: voluntary",
        "context switches/req: involuntary",
    ]
    syscalls = sorted(
        {k for r in runs["receiver"] + runs["bare"] for k in r if k.startswith("syscalls/")},
        key=lambda k: -med("receiver", k),
    )
    print(
        f"\n## Live breakdown: µs of CPU per request, medians of {args.rounds} rounds "
        f"(wrk -t1 -c{args.connections} -d{args.duration}s, py-spy at {args.rate} Hz)\n"
    )
    print("| layer | bare | receiver, accepted | receiver - bare | forged |")
    print("|---|--:|--:|--:|--:|")
    for key in keys + syscalls[:12]:
        bare, recv, forged = med("bare", key), med("receiver", key), med("forged", key)
        if not (bare or recv or forged):
            continue
        fmt = ",.0f" if key == "req/s" else ".1f"
        print(f"| {key} | {bare:{fmt}} | {recv:{fmt}} | {recv - bare:+{fmt}} | {forged:{fmt}} |")
    print(f"\n- load after: `{uptime_line()}`")
    print(f"- command: `python bench/bench_live.py {' '.join(sys.argv[1:])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
