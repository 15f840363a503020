"""Medians over rounds of the side-by-side runs in a results folder, and vagan/PyTorch ratios.

python3 bench/summarize.py bench/results train   ->  a markdown table on stdout
"""
import json
import pathlib
import statistics
import sys

folder, prefix = pathlib.Path(sys.argv[1]), sys.argv[2]
runs = {}
for f in sorted(folder.glob(f"{prefix}_*.json")):
    parts = f.stem.split("_")  # prefix, config, impl, round
    if len(parts) != 4:
        continue
    runs.setdefault(parts[1], {}).setdefault(parts[2], []).append(json.loads(f.read_text()))

print("| config | impl | img/s (median step) | img/s (mean over whole reg. cycles) | peak RSS GB | rounds |")
print("|---|---|---|---|---|---|")
ratios = []
for cfg, impls in runs.items():
    med = {}
    for impl, rs in sorted(impls.items()):
        m = statistics.median(r["img_per_s"] for r in rs)
        mm = statistics.median(r["img_per_s_mean"] for r in rs)
        rss = max(r["peak_rss_gb"] for r in rs)
        med[impl] = (m, mm, rss)
        print(f"| {cfg} | {impl} | {m:.2f} | {mm:.2f} | {rss:.2f} | {len(rs)} |")
    for ref in ("pytorch", "pytorchNHWC"):
        if "vagan" in med and ref in med:
            v, p = med["vagan"], med[ref]
            ratios.append(f"{cfg}: vagan/{ref} speed ratio {v[0] / p[0]:.2f} (median step), "
                          f"{v[1] / p[1]:.2f} (mean); peak memory ratio {v[2] / p[2]:.2f}")
print()
for r in ratios:
    print(f"- {r}")
