"""Benchmark what keyspace notifications cost the server's writes (by hand): ``grant``
turns them on (``notify-keyspace-events Khgxe``) so that a role's hot cache can follow its
space (docs/security.md).

    PYTHONPATH=. python benchmarks/bench_notify.py [--rounds 15] [--n 2000]

Starts its own embedded server in a temporary directory, then in each round times raw
redis-py pipelined HSET of ``--n`` hashes of 1.5 KB (a 384-d float32 vector and a small
field) three ways, in alternating order: notifications off (the baseline), on with nobody
subscribed, and on with one pattern subscriber of those keys (what a role's hot cache
adds). Prints the median over rounds of each, as a ratio to the baseline measured in the
same run. Machine caveat: 2 shared, noisy cores, client and server on the same box.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from rediscache import server
from rediscache.access import KEYSPACE_EVENTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "srv"
        info, _ = server.start(server.ServerConfig(data_dir=data))
        try:
            client = info.client()
            listener = info.client().pubsub()
            blob = os.urandom(1536)

            def write() -> float:
                pipe = client.pipeline(transaction=False)
                for i in range(args.n):
                    pipe.hset(f"rc:{{bench}}:g1:d:{i}", mapping={"vec": blob, "meta": "x"})
                began = time.perf_counter()
                pipe.execute()
                return time.perf_counter() - began

            ways = ["off", "on", "on + subscriber"]
            times: dict[str, list[float]] = {w: [] for w in ways}
            for r in range(args.rounds):
                for way in ways if r % 2 == 0 else ways[::-1]:
                    flags = "" if way == "off" else KEYSPACE_EVENTS
                    client.config_set("notify-keyspace-events", flags)
                    if way == "on + subscriber":
                        listener.psubscribe("__keyspace@0__:rc:{bench}:*")
                    times[way].append(write())
                    if way == "on + subscriber":
                        listener.punsubscribe()
                        while listener.get_message(timeout=0.01):
                            pass
            base = statistics.median(times["off"])
            print(f"{args.rounds} rounds x {args.n} pipelined HSET; medians, ratio to 'off'")
            for way in ways:
                med = statistics.median(times[way])
                print(f"  {way:16s} {med * 1e3:8.1f} ms  {med / base:.2f}x")
            listener.close()
            client.close()
        finally:
            server.stop(data)


if __name__ == "__main__":
    main()
