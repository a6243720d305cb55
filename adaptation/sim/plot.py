"""Capacity, estimate, sending rate, chosen layer, fallback state and queuing delay against time."""

from __future__ import annotations

from adaptation.fallback import FallbackState
from adaptation.sim.run import RunResult

_FALLBACK_LEVEL = {FallbackState.VIDEO: 0, FallbackState.PROBING_BACK: 1, FallbackState.AUDIO_ONLY: 2}


def plot(result: RunResult, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flows = result.flows
    fig, axes = plt.subplots(4, 1, figsize=(11, 9), sharex=True, height_ratios=(3, 1.2, 1, 1.4))
    rate_ax, layer_ax, fb_ax, queue_ax = axes
    colours = ("tab:blue", "tab:orange", "tab:purple", "tab:brown")
    first = flows[0].samples
    t = [s.t for s in first]
    share = " / flows (fair share)" if len(flows) > 1 else ""
    rate_ax.step(
        t,
        [s.link_bps / len(flows) / 1000 for s in first],
        where="post",
        color="black",
        lw=1.5,
        label=f"capacity{share}",
    )
    for i, trace in enumerate(flows):
        c = colours[i % len(colours)]
        name = f"flow {i + 1} " if len(flows) > 1 else ""
        ts = [s.t for s in trace.samples]
        rate_ax.plot(
            ts, [s.estimate_bps / 1000 for s in trace.samples], color=c, lw=1.2, label=f"{name}estimate"
        )
        rate_ax.plot(
            ts,
            [s.send_bps / 1000 for s in trace.samples],
            color=c,
            lw=0.7,
            alpha=0.55,
            label=f"{name}sending (200 ms)",
        )
        layer_ax.step(ts, [-1 if s.layer is None else s.layer for s in trace.samples], where="post", color=c)
        fb_ax.step(ts, [_FALLBACK_LEVEL[s.fallback] for s in trace.samples], where="post", color=c)
    rate_ax.set_ylabel("kbps")
    rate_ax.set_ylim(bottom=0)
    rate_ax.legend(loc="upper right", fontsize=8, ncol=2)
    rate_ax.set_title(
        f"{result.profile.name}: one-way {result.profile.one_way_delay_ms:g} ms, "
        f"queue {result.profile.queue_ms:g} ms, loss {result.profile.loss:g}"
    )
    layer_ax.set_yticks([-1, 0, 1, 2], ["paused", "150k", "500k", "1.5M"])
    layer_ax.set_ylabel("layer")
    layer_ax.set_ylim(-1.5, 2.5)
    fb_ax.set_yticks([0, 1, 2], ["video", "probing", "audio only"])
    fb_ax.set_ylim(-0.5, 2.5)
    queue_ax.plot(t, [s.queue_delay_s * 1000 for s in first], color="tab:red", lw=0.8)
    queue_ax.set_ylabel("queue ms")
    queue_ax.set_xlabel("simulated seconds")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
