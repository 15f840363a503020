"""FID per kimg of the runs under a directory, side by side, and each run's cost per kimg.

python3 bench/summarize_fid.py RUNS_DIR METRIC  (standard library only)
"""
import json
import statistics
import sys
from pathlib import Path


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def main(root, metric):
    runs = sorted(p for p in Path(root).iterdir() if (p / f"metric-{metric}.jsonl").exists())
    fid = {r.name: {l["kimg"]: l["results"][metric] for l in lines(r / f"metric-{metric}.jsonl")} for r in runs}
    kimgs = sorted({k for f in fid.values() for k in f})
    names = [r.name for r in runs]
    print(f"| kimg | " + " | ".join(f"{metric} {n}" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for k in kimgs:
        cells = [f"{fid[n][k]:.2f}" if k in fid[n] else "" for n in names]
        print(f"| {k:g} | " + " | ".join(cells) + " |")
    print()
    print("| run | median sec/kimg (training ticks) | total training s | metric s per evaluation |")
    print("|---|---|---|---|")
    for r in runs:
        ticks = lines(r / "stats.jsonl")
        per_kimg = [t["sec_per_tick"] / (t["kimg"] - p["kimg"]) for p, t in zip([{"kimg": 0.0}] + ticks, ticks)]
        evals = [l["total_time"] for l in lines(r / f"metric-{metric}.jsonl")]
        print(f"| {r.name} | {statistics.median(per_kimg):.1f} | {ticks[-1]['total_time_s']:.0f} | {statistics.median(evals):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
