"""How much the verifiers cost next to the bare primitives they are built on.

Run as ``python bench/bench_verify.py``. Everything is measured in one process and one run, because
these machines are noisy (swings near 2x between runs): only the ratios printed at the end mean
anything. Each figure is the median of several ``timeit`` repeats, in nanoseconds per call; each
ratio is the median of the per-repeat ratios.

- (a) bare ``hashlib.md5(url + ts + key).hexdigest()`` plus ``hmac.compare_digest``
- (b) ``verify_sensetime_callback`` with a Mapping body and a 2-key ring; the second key matches
- (c) bare ``hmac.new(key, msg, sha256).hexdigest()`` plus ``hmac.compare_digest``
- (d) ``verify_metastudio_callback`` with a query string and a 2-key ring; the second key matches
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verify import (
    Carrier,
    KeyRing,
    MetaStudioVerification,
    SenseTimeVerification,
    metastudio,
    sensetime,
    verify_metastudio_callback,
    verify_sensetime_callback,
)

SENSETIME_URL = "https://hooks.example.com/sensetime/callback?tenant=acme&env=prod"
METASTUDIO_URL = "https://hooks.example.com/callbacks/metastudio?tenant=acme&env=prod"
OLD_KEY = "OldKey1Aabcdefgh"
NEW_KEY = "Rot8Key2024abcXYZ"
NOW = 1_763_856_000


def _clock() -> float:
    return NOW


def cases() -> dict[str, Callable[[], object]]:
    """The four measured callables, each checked once before it is timed."""
    ring = KeyRing([OLD_KEY, NEW_KEY])  # the second key is the one that signed: worst case

    st_ts = str(NOW)
    st_sig = sensetime.sign(SENSETIME_URL, NOW, NEW_KEY)
    st_body = {"taskId": 123456, "status": 2, "timestamp": NOW, "signature": st_sig}

    def bare_md5() -> bool:
        digest = hashlib.md5((SENSETIME_URL + st_ts + NEW_KEY).encode()).hexdigest()
        return hmac.compare_digest(digest, st_sig)

    def verify_st() -> SenseTimeVerification:
        return verify_sensetime_callback(SENSETIME_URL, st_body, ring, clock=_clock)

    ms_ts = metastudio.format_timestamp(NOW)
    ms_msg = (metastudio.canonical_uri(METASTUDIO_URL) + ms_ts).encode()
    ms_key = NEW_KEY.encode()
    ms_secret = metastudio.sign(METASTUDIO_URL, ms_ts, NEW_KEY)
    ms_query = metastudio.sign_url(METASTUDIO_URL, NEW_KEY, NOW).partition("?")[2].encode()

    def bare_hmac() -> bool:
        digest = hmac.new(ms_key, ms_msg, hashlib.sha256).hexdigest()
        return hmac.compare_digest(digest, ms_secret)

    def verify_ms() -> MetaStudioVerification:
        return verify_metastudio_callback(
            METASTUDIO_URL, ms_query, ring, carrier=Carrier.JOB_QUERY, clock=_clock
        )

    assert bare_md5()
    assert verify_st().key_id == ring.keys[1].id
    assert bare_hmac()
    assert verify_ms().key_id == ring.keys[1].id
    return {
        "a  md5 + compare_digest": bare_md5,
        "b  verify_sensetime_callback": verify_st,
        "c  hmac-sha256 + compare_digest": bare_hmac,
        "d  verify_metastudio_callback": verify_ms,
    }


def measure(func: Callable[[], object], number: int, repeat: int) -> float:
    """Median nanoseconds per call over ``repeat`` runs of ``number`` calls."""
    runs = timeit.repeat(func, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=15, help="repeats (the median is kept)")
    args = parser.parse_args(argv)

    funcs = cases()
    # Interleave the repeats so a noisy spell hits every case alike rather than one of them, and
    # take each ratio within a round (a and b measured back to back) before the median.
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(args.repeat):
        for name, func in funcs.items():
            samples[name].append(measure(func, args.number, 1))
    ns = {name: statistics.median(values) for name, values in samples.items()}
    a, b, c, d = samples.values()
    b_over_a = statistics.median(y / x for x, y in zip(a, b, strict=True))
    d_over_c = statistics.median(y / x for x, y in zip(c, d, strict=True))

    print(f"python {sys.version.split()[0]}, median of {args.repeat} x {args.number} calls")
    print(f"{'case':<36}{'ns/call':>10}")
    for name, value in ns.items():
        print(f"{name:<36}{value:>10.0f}")
    print(f"b/a = {b_over_a:.2f}  (target <= 3)")
    print(f"d/c = {d_over_c:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
