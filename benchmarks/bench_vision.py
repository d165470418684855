"""Vision pipeline throughput: this project's pipelines against the reference 5.x's on the same
checkpoints, in ONE process, calls interleaved with the order alternating each round; and peak
memory in separate processes.

    /work/refvenv/bin/python benchmarks/bench_vision.py [--families vit,detr,segformer] [--batches 1,8]
        [--dtypes float32,bfloat16] [--rounds 3] [--images 16]
    /work/refvenv/bin/python benchmarks/bench_vision.py --memory

(the reference's venv, this repository on ``sys.path``). Checkpoints: the reference builds each
family at its real base shape with random weights (seeded) and its own image processor, saved once
under ``--cache`` (default /tmp/pretrained-bench-vision):

- ``vit``: google/vit-base-patch16-224's shape (12 x 768, 224 px, 1000 labels), image-classification;
- ``detr``: facebook/detr-resnet-50's shape (ResNet-50 backbone without timm, 6 + 6 layers of 256,
  100 queries, 91 labels, shortest edge 800 / longest 1333), object-detection;
- ``segformer``: nvidia/segformer-b0's shape (MiT-b0, 150 labels, 512 px), image-segmentation.

Both libraries read the same folder. What is timed is the whole pipeline call on ``--images``
picture files (tests/fixtures/images as 640 x 480 copies, repeated): decode, preprocess, forward, postprocess, at
``batch_size`` 1 and 8. Reported: images per second of each, and ours / reference (medians over
rounds), and whether the answers agree (labels; box count; mask labels).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

IMAGES = ROOT / "tests" / "fixtures" / "images"
TASKS = {"vit": "image-classification", "detr": "object-detection", "segformer": "image-segmentation"}


def build(family: str, folder: Path) -> Path:
    """The reference's random base-shaped model and processor for ``family``, saved once."""
    out = folder / family
    if (out / "config.json").exists():
        return out
    import transformers as t

    torch.manual_seed(0)
    if family == "vit":
        model = t.ViTForImageClassification(t.ViTConfig(num_labels=1000))
        proc = t.ViTImageProcessor()
    elif family == "detr":
        backbone = t.ResNetConfig(out_features=["stage4"], layer_type="bottleneck", depths=[3, 4, 6, 3],
                                  hidden_sizes=[256, 512, 1024, 2048])
        model = t.DetrForObjectDetection(t.DetrConfig(use_timm_backbone=False, backbone_config=backbone,
                                                      use_pretrained_backbone=False, num_labels=91))
        proc = t.DetrImageProcessor()
    elif family == "segformer":
        config = t.SegformerConfig(num_labels=150, hidden_sizes=[32, 64, 160, 256], decoder_hidden_size=256,
                                   depths=[2, 2, 2, 2])
        model = t.SegformerForSemanticSegmentation(config)
        proc = t.SegformerImageProcessor()
    else:
        raise SystemExit(f"unknown family {family!r}; choose from {', '.join(TASKS)}")
    model.eval().save_pretrained(out)
    proc.save_pretrained(out)
    return out


def pictures(n: int, folder: str = "/tmp/pretrained-bench-vision") -> list[str]:
    """``n`` picture files: the bundled pictures as 640 x 480 RGB PNG copies (one size, so that
    DETR's processor gives one size too: the reference's pipeline cannot batch pictures of
    different processed sizes), repeated."""
    from PIL import Image

    out = Path(folder) / "pictures"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for source in sorted(p for p in IMAGES.iterdir() if p.suffix in (".png", ".jpg")):
        target = out / f"{source.stem}.png"
        if not target.exists():
            Image.open(source).convert("RGB").resize((640, 480), Image.BICUBIC).save(target)
        files.append(str(target))
    return [files[i % len(files)] for i in range(n)]


def ours(task: str, folder: Path, dtype: torch.dtype):
    from pretrained import pipeline

    return pipeline(task, model=str(folder), torch_dtype=dtype)


def reference(task: str, folder: Path, dtype: torch.dtype):
    import transformers

    return transformers.pipeline(task, model=str(folder), dtype=dtype)


def summary(task: str, answers: list) -> list:
    """What both libraries must agree on: top label; number of boxes; the mask labels."""
    if task == "image-classification":
        return [a[0]["label"] for a in answers]
    return [sorted(d["label"] for d in a) for a in answers]


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    files = pictures(args.images)
    for family in args.families.split(","):
        task = TASKS[family]
        folder = build(family, Path(args.cache))
        for dtype_name in args.dtypes.split(","):
            dtype = getattr(torch, dtype_name)
            runners = {"ours": ours(task, folder, dtype), "reference": reference(task, folder, dtype)}
            for batch in map(int, args.batches.split(",")):
                calls = {name: (lambda p=p: p(files, batch_size=batch)) for name, p in runners.items()}
                answers = {name: fn() for name, fn in calls.items()}   # warm-up, and the answers compared
                times = {name: [] for name in calls}
                for r in range(args.rounds):
                    order = list(calls) if r % 2 == 0 else list(reversed(list(calls)))
                    for name in order:
                        t = time.perf_counter()
                        calls[name]()
                        times[name].append(time.perf_counter() - t)
                ips = {name: len(files) / statistics.median(v) for name, v in times.items()}
                row = {"family": family, "dtype": dtype_name, "batch_size": batch, "images": len(files),
                       **{f"img_per_s_{k}": round(v, 2) for k, v in ips.items()},
                       "ours/reference": round(ips["ours"] / ips["reference"], 2),
                       "same_answers": summary(task, answers["ours"]) == summary(task, answers["reference"])}
                print(json.dumps(row), flush=True)


def memory(args) -> None:
    """Peak RSS of one batch-8 float32 pipeline call, each library in a fresh process."""
    for family in args.families.split(","):
        folder = build(family, Path(args.cache))
        for lib in ("ours", "reference"):
            code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(ROOT)!r}); "
                    "import benchmarks.bench_vision as b, torch, resource; "
                    f"torch.set_num_threads({args.threads}); "
                    f"p = b.{lib}({TASKS[family]!r}, b.Path({str(folder)!r}), torch.float32); "
                    f"p(b.pictures({args.images}), batch_size=8); "
                    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if out.returncode:
                print(json.dumps({"family": family, "library": lib, "error": out.stderr.strip().splitlines()[-1:]}))
                continue
            print(json.dumps({"family": family, "library": lib, "peak_rss_mib": int(out.stdout.split()[-1])}),
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="vit,detr,segformer")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/pretrained-bench-vision")
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args()
    print(json.dumps({"cpu_threads": args.threads, "torch": torch.__version__,
                      "maxrss_unit": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss and "KiB"}))
    (memory if args.memory else speed)(args)


if __name__ == "__main__":
    main()
