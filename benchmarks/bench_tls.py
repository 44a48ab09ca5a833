"""Benchmark the embedded server's TLS endpoint (by hand): what ``rediss://`` through
:mod:`rediscache.tlsproxy` costs a round trip against plain TCP to the same server.

    PYTHONPATH=. python benchmarks/bench_tls.py [--rounds 30] [--calls 300]

Starts its own embedded server in a temporary directory with a certificate from a
throwaway CA (trustme, a test dependency), writes 1,000 vectors of 384 float32, then in
each round (the order of the four alternated) times ``--calls`` single calls of each:

* rediscache ``space.get`` over plain TCP and over TLS;
* raw redis-py ``HGET`` of the same hash over plain TCP and over TLS.

Prints the medians over rounds of the per-call median and p99 (microseconds), and the
ratios TLS / TCP measured in the same run. Machine caveat: 2 shared, noisy cores, client,
endpoint and server on the same box (the endpoint's relay is a Python process here).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import redis

import rediscache
from rediscache import server
from rediscache.keys import SpaceKeys


def _time(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e6, times[int(0.99 * (len(times) - 1))] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    import trustme

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        cert.private_key_pem.write_to_path(str(d / "key.pem"))
        config = server.ServerConfig(
            data_dir=d / "srv", tls_cert=d / "cert.pem", tls_key=d / "key.pem"
        )
        info, _ = server.start(config)
        assert info.tls_url is not None
        try:
            tcp = rediscache.connect(info.url)
            tls = rediscache.connect(info.tls_url, ssl_ca_certs=str(d / "ca.pem"))
            rng = np.random.default_rng(0)
            space = tcp.create_space("bench", 384)
            keys = [f"k{i}" for i in range(1000)]
            space.put_many(keys, rng.standard_normal((1000, 384)).astype(np.float32))
            doc = SpaceKeys.for_space("bench").gen(1).doc("k7")
            raw_tcp = redis.Redis.from_url(info.url)
            raw_tls = redis.Redis.from_url(info.tls_url, ssl_ca_certs=str(d / "ca.pem"))
            s_tcp, s_tls = tcp.space("bench"), tls.space("bench")
            ways: dict[str, Callable[[], object]] = {
                "get tcp": lambda: s_tcp.get("k7"),
                "get tls": lambda: s_tls.get("k7"),
                "raw HGET tcp": lambda: raw_tcp.hget(doc, "vec"),
                "raw HGET tls": lambda: raw_tls.hget(doc, "vec"),
            }
            for fn in ways.values():  # warm up (connections, scripts)
                _time(fn, 50)
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
            names = list(ways)
            for r in range(args.rounds):
                order = names if r % 2 == 0 else names[::-1]
                for name in order:
                    results[name].append(_time(ways[name], args.calls))
            med = {n: statistics.median(m for m, _ in v) for n, v in results.items()}
            p99 = {n: statistics.median(p for _, p in v) for n, v in results.items()}
            print(f"{args.rounds} rounds x {args.calls} calls; medians over rounds, us")
            for name in names:
                print(f"  {name:14s} median {med[name]:7.1f}  p99 {p99[name]:7.1f}")
            for what in ("get", "raw HGET"):
                print(
                    f"  {what}: TLS / TCP median {med[what + ' tls'] / med[what + ' tcp']:.2f}x,"
                    f" p99 {p99[what + ' tls'] / p99[what + ' tcp']:.2f}x"
                )
            for c in (tcp, tls):
                c.close()
            raw_tcp.close()
            raw_tls.close()
        finally:
            server.stop(d / "srv")


if __name__ == "__main__":
    main()
