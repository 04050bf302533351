"""ETA accuracy: how far the service's ETA is from the simulator's real arrival.

Runs embedded Redis, a gateway and simulated drivers (or reads a JSONL log
from an earlier `driver-sim --eta-log` run), and prints the median absolute
ETA error at 25 %, 50 % and 75 % of each leg, relative to the real remaining
time. Target: median error at mid-trip <= 10 %.

    .venv/bin/python bench/eta_accuracy.py [--drivers 8 --trips 40 --speedup 20]
    .venv/bin/python bench/eta_accuracy.py --jsonl bench/results/eta.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from pathlib import Path

from driver_sim.runner import SimOptions, run_fleet
from driver_sim.shift import ETA_CHECKPOINTS, ShiftConfig
from tracking.local import LocalStack
from tracking.routing import default_map_path

RESULTS = Path(__file__).parent / "results"


def simulate(drivers: int, trips: int, speedup: float, seed: int, log_path: Path) -> None:
    secret = secrets.token_urlsafe(32)
    with LocalStack(env={"TRACKING_JWT_SECRET": secret}) as stack:
        opts = SimOptions(
            url=stack.base,
            secret=secret,
            map_path=default_map_path(),
            drivers=drivers,
            speedup=speedup,
            seed=seed,
            trips=trips,
            eta_log=str(log_path),
            prefix=f"eta{seed}",
            shift=ShiftConfig(dropouts_per_hour=0, disconnects_per_hour=0),
        )
        fleet = asyncio.run(run_fleet(opts))
        print(f"simulated: {fleet.stats.summary()}")


def summarise(log_path: Path) -> dict[str, object]:
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    table: dict[str, object] = {"samples": len(rows)}
    for fraction in ETA_CHECKPOINTS:
        errors = [
            abs(r["predicted_s"] - r["actual_s"]) / r["actual_s"]
            for r in rows
            if r["fraction"] == fraction and r["actual_s"] > 0
        ]
        table[f"{int(fraction * 100)}%"] = {
            "n": len(errors),
            "median_abs_error_pct": round(100 * statistics.median(errors), 1) if errors else None,
            "p90_abs_error_pct": (
                round(100 * statistics.quantiles(errors, n=10)[-1], 1)
                if len(errors) >= 10
                else None
            ),
        }
    signed = [
        (r["predicted_s"] - r["actual_s"]) / r["actual_s"]
        for r in rows
        if r["fraction"] == 0.5 and r["actual_s"] > 0
    ]
    table["mid_trip_median_signed_pct"] = (
        round(100 * statistics.median(signed), 1) if signed else None
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl", help="analyse this log instead of simulating")
    parser.add_argument("--drivers", type=int, default=8)
    parser.add_argument("--trips", type=int, default=40)
    parser.add_argument("--speedup", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.jsonl:
        log_path = Path(args.jsonl)
    else:
        RESULTS.mkdir(exist_ok=True)
        log_path = RESULTS / f"eta-{int(time.time())}.jsonl"
        simulate(args.drivers, args.trips, args.speedup, args.seed, log_path)
    table = summarise(log_path)
    print(f"ETA log: {log_path} ({table['samples']} samples)")
    print(f"{'point of leg':<14}{'n':>6}{'median |err|':>15}{'p90 |err|':>12}")
    for fraction in ETA_CHECKPOINTS:
        row = table[f"{int(fraction * 100)}%"]
        assert isinstance(row, dict)
        median = f"{row['median_abs_error_pct']} %"
        p90 = f"{row['p90_abs_error_pct']} %"
        print(f"{int(fraction * 100):>3} %{'':<9}{row['n']:>6}{median:>15}{p90:>12}")
    print(f"mid-trip median signed error: {table['mid_trip_median_signed_pct']} % (+ = late)")
    print("target: median |error| at 50 % <= 10 %")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eta_accuracy.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
