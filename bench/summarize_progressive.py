"""A progressive schedule's probes and per-stage FID beside fixed runs at the same kimg.

python3 bench/summarize_progressive.py ROOT FIXED_RUNS_DIR METRIC  (standard library only)
ROOT is a `vagan train --progressive` directory; FIXED_RUNS_DIR holds ordinary run directories
(bench/vision_aided_fid.sh's baseline and lite0) whose FID at each stage end's kimg is shown.
"""
import json
import statistics
import sys
from pathlib import Path


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def fid_by_kimg(run, metric):
    return {round(l["kimg"], 3): l["results"][metric] for l in lines(run / f"metric-{metric}.jsonl")}


def main(root, fixed_dir, metric):
    root, fixed_dir = Path(root), Path(fixed_dir)
    print("Probes (pooled features of the real set and as many G_ema fakes, 3 splits):\n")
    print("| stage | probed snapshot (kimg) | network | val. accuracy mean ± std | probe s | chosen |")
    print("|---|---|---|---|---|---|")
    for l in lines(root / "selection.jsonl"):
        r = l["result"]
        print(f"| {l['stage']} | {Path(l['checkpoint']).name} ({l['kimg']:g}) | {r['network']} "
              f"| {r['mean_accuracy']:.4f} ± {r['std_accuracy']:.4f} | {r['seconds']:.0f} "
              f"| {'yes' if l['chosen'] else ''} |")
    fixed = sorted(p for p in fixed_dir.iterdir() if (p / f"metric-{metric}.jsonl").exists())
    fixed_fid = {p.name: fid_by_kimg(p, metric) for p in fixed}
    stages = sorted((p for p in root.iterdir() if p.name.startswith("stage")),
                    key=lambda p: int(p.name[5:].split("-")[0]))
    print(f"\n{metric} at each stage's end, and the fixed runs at the same kimg:\n")
    head = " | ".join(f"{metric} {n}" for n in fixed_fid)
    print(f"| stage | ensemble | kimg | {metric} progressive | best in stage (kimg) | {head} | median sec/kimg |")
    print("|---" * (6 + len(fixed_fid)) + "|")
    for s in stages:
        opts = json.loads((s / "training_options.json").read_text())
        ensemble = "+".join((opts.get("stage") or {}).get("chosen") or []) or "none"
        evals = lines(s / f"metric-{metric}.jsonl")
        if not evals:
            continue
        end = evals[-1]
        best = min(evals, key=lambda l: l["results"][metric])
        k = round(end["kimg"], 3)
        cells = [f"{f[k]:.2f}" if k in f else "" for f in fixed_fid.values()]
        ticks = lines(s / "stats.jsonl")
        # The first tick of a stage is left out: its start is in another directory.
        per_kimg = [t["sec_per_tick"] / (t["kimg"] - p["kimg"]) for p, t in zip(ticks, ticks[1:])]
        speed = f"{statistics.median(per_kimg):.0f}" if per_kimg else ""
        print(f"| {s.name} | {ensemble} | {end['kimg']:g} | {end['results'][metric]:.2f} "
              f"| {best['results'][metric]:.2f} ({best['kimg']:g}) | " + " | ".join(cells) + f" | {speed} |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
