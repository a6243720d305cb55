from __future__ import annotations

from itertools import pairwise

import pytest

from adaptation.pacer import Pacer, PacketKind
from adaptation.prober import Prober


def drain(pacer: Pacer[str], until: float) -> list[tuple[float, str | None, PacketKind, int | None]]:
    out = []
    t = 0.0
    while True:
        wake = pacer.next_send_time(now=t)
        if wake is None or wake > until:
            return out
        t = wake
        release = pacer.pop(now=t)
        if release is not None:
            out.append((round(t, 6), release.item, release.kind, release.probe_cluster))


def test_paces_video_at_the_rate() -> None:
    pacer: Pacer[str] = Pacer(rate_bps=800_000)  # 1000 bytes every 10 ms
    for i in range(5):
        pacer.enqueue(f"v{i}", 1000, PacketKind.VIDEO)
    sent = drain(pacer, 1.0)
    times = [t for t, *_ in sent]
    gaps = [b - a for a, b in pairwise(times)]
    # up to 5 ms of budget may build up while idle; after that, one packet per 10 ms
    assert gaps[0] >= 0.005 - 1e-9
    assert gaps[1:] == pytest.approx([0.01] * 3, abs=1e-6)


def test_audio_first_and_never_held_back() -> None:
    pacer: Pacer[str] = Pacer(rate_bps=800_000)
    for i in range(3):
        pacer.enqueue(f"v{i}", 1000, PacketKind.VIDEO)
    pacer.enqueue("r", 1000, PacketKind.RETRANSMISSION)
    pacer.enqueue("a", 100, PacketKind.AUDIO)
    order = [item for _, item, *_ in drain(pacer, 1.0)]
    assert order[:3] == ["a", "r", "v0"]
    # audio goes out at once even with video queued
    pacer.enqueue("v9", 1000, PacketKind.VIDEO)
    pacer.enqueue("a2", 100, PacketKind.AUDIO)
    assert pacer.next_send_time(now=2.0) == 2.0
    release = pacer.pop(now=2.0)
    assert release is not None and release.item == "a2"


def test_probe_cluster_fills_with_padding_and_tags_everything() -> None:
    cluster = Prober().plan(1_000_000, 300_000, now=0.0)
    assert cluster is not None
    pacer: Pacer[str] = Pacer(rate_bps=300_000)
    pacer.enqueue("v0", 500, PacketKind.VIDEO)
    pacer.start_probe(cluster, now=0.0)
    sent = drain(pacer, 1.0)
    assert sent[0][1] == "v0"
    assert all(cid == cluster.cluster_id for *_, cid in sent)
    padding = [s for s in sent if s[2] is PacketKind.PADDING]
    assert padding and all(item is None for _, item, *_ in padding)
    assert len(sent) >= cluster.min_packets
    assert pacer.probing is None


def test_padding_cannot_be_enqueued() -> None:
    with pytest.raises(ValueError):
        Pacer[str]().enqueue("x", 10, PacketKind.PADDING)
