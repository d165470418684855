"""The handwritten-digit classifiers trained here (examples/train_image_classifier.py: a small ViT
and a small ConvNeXt trained from scratch on scikit-learn's UCI digits; cached under
~/.cache/pretrained/trained/digits-vit and digits-convnext, not committed), run as a user would
through ``pipeline("image-classification")``: on the held-out digits saved as PNG files next to
each, and on the whole held-out split rebuilt from scikit-learn, at least the accuracy its training
run recorded (results.json) less a small margin, and at least 0.95 over the split. Where a model
has not been trained on this machine the tests say how to make it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pretrained.io.paths import cache_home

TRAINED = cache_home() / "pretrained" / "trained"
MODELS = {"vit": "ViTForImageClassification", "convnext": "ConvNextForImageClassification"}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LABELS = [str(d) for d in range(10)]


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request):
    """(folder, results.json, the pipeline) of one trained model."""
    folder = TRAINED / f"digits-{request.param}"
    needed = ("results.json", "model.safetensors", "preprocessor_config.json", "held_out/labels.json")
    if not all((folder / n).is_file() for n in needed):
        pytest.skip(f"no trained digit classifier in {folder}: run `python examples/train_image_classifier.py "
                    f"--model {request.param}` (a few minutes; needs scikit-learn) to train and cache it")
    from pretrained import pipeline

    results = json.loads((folder / "results.json").read_text())
    clf = pipeline("image-classification", model=str(folder))
    assert type(clf.model).__name__ == results["model"] == MODELS[request.param]
    return folder, results, clf


@pytest.mark.slow
def test_held_out_png_files_are_classified_as_accurately_as_recorded(trained):
    folder, results, clf = trained
    labels = json.loads((folder / "held_out" / "labels.json").read_text())
    assert len(labels) == results["held_out_files"] >= 20 and set(labels.values()) == set(LABELS)
    paths = [str(folder / "held_out" / name) for name in labels]
    predicted = [o[0]["label"] for o in clf(paths, top_k=1, batch_size=8)]
    accuracy = sum(p == labels[Path(f).name] for p, f in zip(predicted, paths)) / len(paths)
    assert accuracy >= results["held_out_files_accuracy"] - 0.05, (accuracy, results["held_out_files_accuracy"])
    assert accuracy >= 0.9   # chance is 0.1
    one_by_one = [clf(f, top_k=1)[0]["label"] for f in paths[:6]]
    assert one_by_one == predicted[:6]


@pytest.mark.slow
def test_the_whole_held_out_split_is_classified_as_accurately_as_recorded(trained):
    pytest.importorskip("sklearn")
    _, results, clf = trained
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_image_classifier
    finally:
        sys.path.remove(str(EXAMPLES))
    test = train_image_classifier.load()["test"]
    assert test["index"] == results["test_index"]   # the split the model never trained on
    predicted = [o[0]["label"] for o in clf(test["images"], top_k=1, batch_size=64)]
    accuracy = sum(p == LABELS[y] for p, y in zip(predicted, test["labels"])) / len(predicted)
    assert accuracy >= results["test_accuracy_pipeline"] - 0.01, (accuracy, results["test_accuracy_pipeline"])
    assert accuracy >= 0.95   # the bar for this set (chance is 0.1)


@pytest.mark.slow
def test_top_k_gives_three_distinct_digits_best_first(trained):
    folder, _, clf = trained
    labels = json.loads((folder / "held_out" / "labels.json").read_text())
    for name in list(labels)[::4]:
        out = clf(str(folder / "held_out" / name), top_k=3)
        assert len(out) == 3 and len({o["label"] for o in out}) == 3 and all(o["label"] in LABELS for o in out)
        scores = [o["score"] for o in out]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        every = clf(str(folder / "held_out" / name), top_k=10)
        assert len(every) == 10 and sum(o["score"] for o in every) == pytest.approx(1.0, abs=1e-5)
        assert every[:3] == out
