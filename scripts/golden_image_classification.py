"""Goldens for the image-classification pipeline, from the reference 5.x, on a tiny random ViT
classifier with named labels and a ViTImageProcessor (32x32), over the real pictures in
tests/fixtures/images (scikit-image's, public domain):

    /work/refvenv/bin/python scripts/golden_image_classification.py

The reference's pipeline is given its slow (PIL + numpy) ViTImageProcessor: its default "fast"
one needs torchvision, which this torch build has none of. Writes
tests/fixtures/models/vit-imgcls-pipeline/ and tests/fixtures/goldens/image_classification.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
DST = FIX / "models" / "vit-imgcls-pipeline"
IMAGES = ["chelsea.png", "rocket.jpg", "camera.png", "coins.png", "horse.png"]
LABELS = ["cat", "rocket", "camera", "coins", "horse", "other"]
CASES = {
    "default": {},
    "top_k_2": {"top_k": 2},
    "sigmoid": {"function_to_apply": "sigmoid"},
    "none_top_k_10": {"function_to_apply": "none", "top_k": 10},
}


def main() -> None:
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=48, num_labels=len(LABELS),
                                    id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():   # spread the head so the scores are far apart (no ties at 1e-4)
        model.classifier.weight.normal_(std=0.5)
    shutil.rmtree(DST, ignore_errors=True)
    model.save_pretrained(DST)
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    processor.save_pretrained(DST)
    pipe = transformers.pipeline("image-classification", model=str(DST), image_processor=processor)
    out = {"transformers": transformers.__version__, "images": IMAGES, "cases": {}}
    for name, kw in CASES.items():
        out["cases"][name] = {"kwargs": kw, "output": [pipe(str(FIX / "images" / f), **kw) for f in IMAGES]}
    pil = Image.open(FIX / "images" / "chelsea.png")
    out["pil_chelsea"] = pipe(pil)
    out["batch"] = pipe([str(FIX / "images" / f) for f in IMAGES], batch_size=2, top_k=1)
    (FIX / "goldens" / "image_classification.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["cases"]["default"]["output"][0]))


if __name__ == "__main__":
    main()
