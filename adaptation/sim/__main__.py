"""`python -m adaptation.sim PROFILE [--json] [--plot FILE.png]`: run a profile in simulated time."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from adaptation.controller import ControllerConfig
from adaptation.sim.metrics import metrics
from adaptation.sim.profiles import BUILTIN, load
from adaptation.sim.run import simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptation.sim", description=__doc__)
    parser.add_argument("profile", help=f"a built-in profile ({', '.join(BUILTIN)}) or a JSON file")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the run (needs matplotlib)")
    parser.add_argument(
        "--probe-backoff-max",
        type=float,
        metavar="S",
        help="override the prober's back-off cap (DESIGN.md says 60 s; the default is 4 s)",
    )
    parser.add_argument(
        "--probe-duration",
        type=float,
        metavar="S",
        help="override the shortest probe cluster (default 15 ms, libwebrtc's; the media plane runs 0.1, "
        "sfu/downlink.py LIVE_CONFIG)",
    )
    parser.add_argument("--seed", type=int, help="override the profile's seed (publisher noise, jitter, loss)")
    args = parser.parse_args(argv)
    try:
        profile = load(args.profile)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    if args.seed is not None:
        profile = replace(profile, seed=args.seed)
    config = ControllerConfig()
    if args.probe_backoff_max is not None:
        config = replace(config, prober=replace(config.prober, backoff_max_s=args.probe_backoff_max))
    if args.probe_duration is not None:
        config = replace(config, prober=replace(config.prober, min_duration_s=args.probe_duration))
    result = simulate(profile, config=config)
    summary = metrics(result)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, value in summary.items():
            if key != "per_flow":
                print(f"{key:28} {value}")
    if args.plot:
        from adaptation.sim.plot import plot

        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
