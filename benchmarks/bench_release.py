"""Benchmark model releases (by hand): bulk loads into a stage, publish, and garbage
collection beside a million unrelated keys.

    PYTHONPATH=. python benchmarks/bench_release.py [--url URL] [--data DIR] [--n 20000]
                                                    [--unrelated 1000000] [--json PATH]

In one run, on one server, for the same n vectors (dev set, or the bundled sample; beyond
its size grown with noisy copies as bench_versions does), each way
of loading starting from the same state: a space holding an old model of the n keys (the
vectors moved by Gaussian noise), alone on the server:

* **live put_many**: ``space.put_many`` of the new model over the old one in the live,
  indexed HNSW space (each row re-indexed as it is written: what a release is without
  stages), until searchable;
* **raw HSET, live index**: pipelined HSETs of the same hashes (1,000 per pipeline) over the
  old model's, raw redis-py, until the index has re-indexed them all;
* **stage load**: ``space.stage()``, ``stage.put_many`` (documents only: the stage has no
  vector index yet), then ``stage.build()`` (one background build of the index), until
  searchable; then ``publish`` (its call time) and recall@10 of the published space on the
  dev queries (exact top-10 ground truth; default ef);
* **rollback from a new client**: ``rollback`` call time, alternating between two versions
  whose indexes are built, each call from a hub opened for it (what a CLI call pays: the
  server's run id and the index mark are read; no FT.INFO), median and p99 over 40 calls;
* **garbage collection**: the time from ``publish(keep=False)``'s return until the replaced
  n-vector generation is deleted by the background collector, once with nothing else in the
  database and once with ``--unrelated`` other keys, with the longest server command
  meanwhile (SLOWLOG, threshold 1 ms: publish's own script included); the baseline beside
  each is raw redis-py UNLINKing n hashes of the same size in 500-key calls (what deleting
  them costs the server at the least: Redis's own per-key cost grows with the keyspace);

Throughputs are vectors per second (n / seconds); ratios are against live put_many measured
in the same run. Machine caveat: 2 shared, noisy cores, client and server on the same box.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import Dataset, load_bundled, load_dev, open_hub, say  # noqa: E402
from bench_versions import grow  # noqa: E402

import rediscache  # noqa: E402
from rediscache import generations  # noqa: E402

K = 10
ROLLBACKS = 40


def _wait_indexed(client: Any, index: str) -> None:
    while True:
        raw = client.execute_command("FT.INFO", index)
        info = dict(zip(raw[::2], raw[1::2]))
        if float(info[b"percent_indexed"]) >= 1 and int(info[b"indexing"]) == 0:
            return
        time.sleep(0.05)


def _recall(space: Any, queries: Any, gt: Any) -> float | None:
    if gt is None:
        return None
    found = 0
    for q, truth in zip(queries, gt):
        hits = space.search(q, K, with_metadata=False)
        found += len({h.key for h in hits} & {str(t) for t in truth[:K]})
    return found / (K * len(queries))


def _fill_unrelated(client: Any, count: int) -> None:
    for start in range(0, count, 10_000):
        pipe = client.pipeline(transaction=False)
        for s in range(start, min(start + 10_000, count), 1000):
            pairs: list[Any] = []
            for i in range(s, min(s + 1000, count)):
                pairs += [f"other:{i}", b"x" * 40]
            pipe.mset(dict(zip(pairs[::2], pairs[1::2])))
        pipe.execute()


def _raw_unlink(client: Any, vectors: Any) -> float:
    """Seconds raw redis-py takes to UNLINK len(vectors) hashes holding them, 500 keys per
    call (the collector's step), after writing them under a scratch prefix."""
    n = len(vectors)
    for s in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(s, min(s + 1000, n)):
            pipe.hset(f"rawdel:{i}", "vec", vectors[i].tobytes())
        pipe.execute()
    t0 = time.perf_counter()
    for s in range(0, n, 500):
        client.unlink(*[f"rawdel:{i}" for i in range(s, min(s + 500, n))])
    return time.perf_counter() - t0


def _old_model(vectors: Any, seed: int = 1) -> Any:
    """The model being replaced: the same vectors moved by noise (sigma 0.05, renormalized)."""
    noisy = vectors + np.random.default_rng(seed).normal(0, 0.05, vectors.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def _space_with_old_model(hub: Any, name: str, data: Any) -> Any:
    """A space holding the old model's n vectors, loaded through a stage (not timed)."""
    hub.drop_space(name, missing_ok=True)
    space = hub.create_space(name, data.vectors.shape[1])
    stage = space.stage()
    stage.put_many(data.keys, _old_model(data.vectors))
    stage.publish(keep=False, timeout=generations.INDEX_TIMEOUT)
    space.collect_garbage()
    return space


def run(hub: Any, data: Any, unrelated: int) -> dict[str, Any]:
    """Each way of loading the new model starts from a space that holds the old one (n
    vectors, indexed), alone on the server: the same state for every way."""
    n = len(data.keys)
    client = hub.client
    out: dict[str, Any] = {"n": n, "source": data.source}

    say(f"live put_many of {n:,} new vectors over the old model ...")
    space = _space_with_old_model(hub, "br", data)
    t0 = time.perf_counter()
    space.put_many(data.keys, data.vectors)
    _wait_indexed(client, space.live_keys.index)
    out["live_put_many_per_s"] = n / (time.perf_counter() - t0)

    say("raw pipelined HSET of the same hashes into the same live index ...")
    space = _space_with_old_model(hub, "br", data)
    gen = space.live_keys
    t0 = time.perf_counter()
    for s in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for key, vec in zip(data.keys[s : s + 1000], data.vectors[s : s + 1000]):
            pipe.hset(gen.doc(key), "vec", vec.tobytes())
        pipe.execute()
    _wait_indexed(client, gen.index)
    out["raw_hset_live_index_per_s"] = n / (time.perf_counter() - t0)

    say("stage load: documents first, then one index build ...")
    space = _space_with_old_model(hub, "br", data)
    t0 = time.perf_counter()
    stage = space.stage("new-model")
    stage.put_many(data.keys, data.vectors)
    loaded = time.perf_counter()
    stage.build(timeout=generations.INDEX_TIMEOUT)
    done = time.perf_counter()
    out["stage_write_s"] = loaded - t0
    out["stage_build_s"] = done - loaded
    out["stage_load_per_s"] = n / (done - t0)
    t0 = time.perf_counter()
    stage.publish(keep=False)
    out["publish_s"] = time.perf_counter() - t0
    out["recall_at_10"] = _recall(space, data.queries[:200], data.gt_ids)

    say("garbage collection of a replaced generation, alone and beside unrelated keys ...")
    for label, extra in (("gc_s_alone", 0), ("gc_s_unrelated", unrelated)):
        space.collect_garbage()
        if extra:
            _fill_unrelated(client, extra)
        s = space.stage()
        s.put_many(data.keys, data.vectors)
        s.build(timeout=generations.INDEX_TIMEOUT)
        replaced = client.hget(space.keys.config, f"n:{space.live_keys.gen}")
        client.config_set("slowlog-log-slower-than", 1000)  # us: every command over 1 ms
        client.slowlog_reset()
        s.publish(keep=False)  # the replaced generation is deleted in the background
        t0 = time.perf_counter()
        while client.scard(space.keys.garbage) or client.exists(space.keys.gc_lock):
            time.sleep(0.005)
        out[label] = time.perf_counter() - t0
        out[label.replace("_s_", "_docs_")] = int(replaced or 0)
        slow = [e for e in client.slowlog_get(128) if b"SLOWLOG" not in e["command"]]
        out[label.replace("gc_s_", "gc_longest_ms_")] = max(
            (e["duration"] / 1000 for e in slow), default=0.0
        )
        out[label.replace("gc_s_", "gc_slow_commands_")] = [
            (e["command"][:60].decode(errors="replace"), e["duration"]) for e in slow[:5]
        ]
        client.config_set("slowlog-log-slower-than", 10000)
        out[label.replace("gc_s_", "raw_unlink_s_")] = _raw_unlink(client, data.vectors)
    out["unrelated_keys"] = unrelated

    say("rollback and publish from a new client each time (as a CLI call) ...")
    x = space.snapshot("x")
    s = space.stage()
    s.put_many(data.keys, _old_model(data.vectors, seed=2))
    s.publish(keep=True, label="y")  # live: the stage; x and y: the replaced generation
    b = space.snapshot("b")
    times = []
    for i in range(ROLLBACKS):
        fresh = rediscache.connect(client=client).space("br")
        t0 = time.perf_counter()
        fresh.rollback(x if i % 2 == 0 else b)
        times.append(time.perf_counter() - t0)
    times.sort()
    out["rollback_new_client_ms"] = {
        "median": 1000 * times[len(times) // 2],
        "p99": 1000 * times[min(len(times) - 1, int(len(times) * 0.99))],
    }
    hub.drop_space("br")
    for s in range(0, unrelated, 10_000):
        client.delete(*[f"other:{i}" for i in range(s, min(s + 10_000, unrelated))])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing server (default: a private embedded one)")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/dev")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--unrelated", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data = load_dev(args.data, args.n) if args.data.is_dir() else load_bundled(args.n)
    if args.n > len(data.keys):  # grown with noise, as bench_versions does (no ground truth)
        vectors, _ = grow(data.vectors, args.n)
        data = Dataset(
            source=f"{data.source}, grown to {args.n:,} with noisy copies (sigma 0.01)",
            keys=[str(i) for i in range(args.n)],
            vectors=vectors,
            metadata=[],
            queries=data.queries,
            gt_ids=None,
        )
    with open_hub(args.url) as (hub, where):
        say(f"server: {where}; data: {data.source}")
        out = run(hub, data, args.unrelated)
    base = out["live_put_many_per_s"]
    say()
    say(f"n = {out['n']:,}")
    say(f"live put_many            {base:10,.0f} vectors/s   1.00x")
    for name, key in (("raw HSET, live index", "raw_hset_live_index_per_s"),
                      ("stage load (+ build)", "stage_load_per_s")):  # fmt: skip
        say(f"{name:<24}{out[key]:10,.0f} vectors/s   {out[key] / base:.2f}x")
    say(f"  stage writes {out['stage_write_s']:.2f} s, index build {out['stage_build_s']:.2f} s")
    say(f"publish call            {out['publish_s'] * 1000:10.2f} ms")
    if out["recall_at_10"] is not None:
        say(f"recall@10 published     {out['recall_at_10']:10.3f}")
    say(f"garbage deleted alone   {out['gc_s_alone']:10.2f} s ({out['gc_docs_alone']:,} docs)")
    say(f"  beside {out['unrelated_keys']:,} other keys {out['gc_s_unrelated']:.2f} s")
    say(
        f"  raw UNLINK of as many hashes: {out['raw_unlink_s_alone']:.2f} s alone, "
        f"{out['raw_unlink_s_unrelated']:.2f} s beside (collector / raw: "
        f"{out['gc_s_alone'] / out['raw_unlink_s_alone']:.2f}x, "
        f"{out['gc_s_unrelated'] / out['raw_unlink_s_unrelated']:.2f}x)"
    )
    say(
        "  longest server command meanwhile (slowlog, > 1 ms): "
        f"{out['gc_longest_ms_alone']:.2f} / {out['gc_longest_ms_unrelated']:.2f} ms"
    )
    rb = out["rollback_new_client_ms"]
    say(f"rollback, new client    {rb['median']:10.2f} ms median, {rb['p99']:.2f} ms p99")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
