"""The live hub: matching, one encoding per filter, bounded queues that coalesce slow clients."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson

from perfintel.batch import SampleBatch
from perfintel.live.hub import LiveHub, publish_detector_outputs
from perfintel.model import label_set, parse_selector


def _batch(n_series: int, per_series: int, t0: int = 1_000) -> SampleBatch:
    series = [label_set({"__name__": "m", "i": str(i)}) for i in range(n_series)]
    idx = np.repeat(np.arange(n_series, dtype=np.int32), per_series)
    ts = np.tile(np.arange(per_series, dtype=np.int64) * 1000 + t0, n_series)
    return SampleBatch(series, idx, ts, np.arange(len(idx), dtype=np.float64))


async def _drain(sub: object) -> list[dict[str, object]]:
    msgs = await sub.next_messages(timeout=1.0)  # type: ignore[attr-defined]
    return [orjson.loads(m) for m in msgs]


def test_only_matching_series_are_sent_in_time_order() -> None:
    async def main() -> None:
        hub = LiveHub()
        hub.bind(asyncio.get_running_loop())
        sub = hub.subscribe([parse_selector('m{i=~"1|3"}')], ["samples"])
        assert sub is not None
        hub.publish_samples(_batch(5, 3))
        msgs = await _drain(sub)
        assert len(msgs) == 1 and msgs[0]["type"] == "samples"
        got = {s["labels"]["i"]: s for s in msgs[0]["series"]}  # type: ignore[index]
        assert sorted(got) == ["1", "3"]
        assert got["1"]["timestamps"] == [1000, 2000, 3000]
        assert got["3"]["values"] == [9.0, 10.0, 11.0]
        hub.publish_samples(_batch(1, 1))  # i="0" only: nothing for this client
        assert await sub.next_messages(timeout=0.05) == []

    asyncio.run(main())


def test_a_slow_client_is_coalesced_then_lagged_out_never_growing() -> None:
    async def main() -> None:
        hub = LiveHub(max_queue=8, max_dropped=20)
        hub.bind(asyncio.get_running_loop())
        sub = hub.subscribe([parse_selector("m")], ["samples"])
        assert sub is not None
        for k in range(15):
            hub.publish_samples(_batch(1, 1, t0=k * 1000))
        await asyncio.sleep(0.05)  # let the loop run the deliveries
        assert len(sub.queue) == 8  # bounded
        msgs = await _drain(sub)
        assert msgs[0] == {"type": "dropped", "messages": 7}
        assert [m["series"][0]["timestamps"][0] for m in msgs[1:]] == [  # type: ignore[index]
            k * 1000 for k in range(7, 15)
        ]
        assert not sub.lagged_out
        for k in range(40):
            hub.publish_samples(_batch(1, 1, t0=k * 1000))
        await asyncio.sleep(0.05)
        assert len(sub.queue) == 8
        await sub.next_messages()
        assert sub.lagged_out  # 32 dropped > 20 since the last read: the stream closes it
        assert hub.stats().dropped_messages == 7 + 32

    asyncio.run(main())


def test_one_encoding_per_filter_and_a_point_cap() -> None:
    async def main() -> None:
        hub = LiveHub(max_points=5)
        hub.bind(asyncio.get_running_loop())
        subs = [hub.subscribe([parse_selector("m")], ["samples"]) for _ in range(50)]
        hub.publish_samples(_batch(2, 10))
        await asyncio.sleep(0.05)
        first = [s.queue[0] for s in subs]  # type: ignore[union-attr]
        assert all(m is first[0] for m in first)  # the same bytes object: encoded once
        doc = orjson.loads(first[0])
        assert sum(len(s["timestamps"]) for s in doc["series"]) == 5  # the newest 5

    asyncio.run(main())


def test_max_clients_and_unsubscribe() -> None:
    async def main() -> None:
        hub = LiveHub(max_clients=2)
        hub.bind(asyncio.get_running_loop())
        a = hub.subscribe([], ["health"])
        b = hub.subscribe([], ["health"])
        assert a is not None and b is not None
        assert hub.subscribe([], ["health"]) is None
        hub.unsubscribe(a)
        assert hub.subscribe([], ["health"]) is not None

    asyncio.run(main())


def test_detector_outputs_become_samples_and_anomaly_events() -> None:
    async def main() -> None:
        hub = LiveHub()
        hub.bind(asyncio.get_running_loop())
        sub = hub.subscribe([parse_selector('node_load1{instance="a"}')], ["anomalies"])
        assert sub is not None
        score = label_set({"__name__": "anomaly_score", "for": "node_load1", "instance": "a"})
        other = label_set({"__name__": "anomaly_score", "for": "node_load1", "instance": "b"})
        batch = SampleBatch(
            [score, other],
            np.array([0, 0, 1], np.int32),
            np.array([1000, 2000, 1000], np.int64),
            np.array([0.5, 3.0, 9.0]),
        )
        publish_detector_outputs(hub, batch)
        assert hub.published_samples == 0  # derived samples are not ingest
        msgs = await _drain(sub)
        assert msgs == [
            {
                "type": "anomalies",
                "data": {
                    "labels": {"instance": "a", "__name__": "node_load1"},
                    "time": 2000,
                    "score": 3.0,
                },
            }
        ]

    asyncio.run(main())
