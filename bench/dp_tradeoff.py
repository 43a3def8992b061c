"""Privacy/utility trade-off of the public aggregates: the error of each released count at the
ε presets, on simulated live-viewer populations. Prints a markdown table.

    python -m bench.dp_tradeoff [--releases 2000] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics

from lvp.config import DP_EPSILON_PRESETS
from viewer.privacy import STATUS_KEYS, PublicStatsReleaser, TrueCounts


def population(rng: random.Random, size: int) -> TrueCounts:
    weights = {"watching": 0.62, "paused": 0.12, "watching_ad": 0.14, "buffering": 0.04, "idle": 0.08}
    by_status = dict.fromkeys(STATUS_KEYS, 0)
    by_media = {"News": 0, "Sport": 0, "Film": 0}
    for _ in range(size):
        by_status[rng.choices(list(weights), list(weights.values()))[0]] += 1
        by_media[rng.choices(list(by_media), [5, 3, 2])[0]] += 1
    return TrueCounts(size, by_status, by_media)


def measure(eps: float, releases: int, size: int, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    truth = population(rng, size)
    r = PublicStatsReleaser(eps, 0.0, float("inf"), float("inf"), media_labels=("News", "Sport", "Film"))
    abs_err: list[float] = []
    rel_err: list[float] = []
    for _ in range(releases):
        out = r.release(lambda: truth)
        pairs = [(out["active"], truth.total)] + [
            (out["by_status"][s], truth.by_status[s]) for s in STATUS_KEYS
        ]
        for noisy, true in pairs:
            abs_err.append(abs(noisy - true))
            if true:
                rel_err.append(abs(noisy - true) / true)
    abs_err.sort()
    return {
        "mean_abs": statistics.mean(abs_err),
        "p95_abs": abs_err[int(0.95 * (len(abs_err) - 1))],
        "mean_rel_pct": 100 * statistics.mean(rel_err),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--releases", type=int, default=2000)
    ap.add_argument("--viewers", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="tiny run for CI")
    args = ap.parse_args()
    releases = 50 if args.quick else args.releases
    print(f"Public stats error per released count ({releases} releases, {args.viewers} active viewers)\n")
    print("| preset | ε | noise scale | mean abs error | p95 abs error | mean relative error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, eps in DP_EPSILON_PRESETS.items():
        m = measure(eps, releases, args.viewers)
        print(
            f"| {name} | {eps} | {3 / eps:.1f} | {m['mean_abs']:.2f} | {m['p95_abs']:.0f} | {m['mean_rel_pct']:.1f}% |"
        )


if __name__ == "__main__":
    main()
