"""Training image models: the image collator (pictures in any form or processed pixel_values,
labels, named errors), a tiny ViT trained with the Trainer and then served by the
image-classification pipeline, LoRA on the tiny ViT fixture, and the helpers of
examples/train_image_classifier.py."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrained.errors import InvalidInputError
from pretrained.training import DataCollatorForImageClassification, Trainer, TrainingArguments
from pretrained.processing import ViTImageProcessor

MODELS = Path(__file__).parent / "fixtures" / "models"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def processor(size=8, mean=0.5, std=0.5):
    return ViTImageProcessor(size={"height": size, "width": size}, image_mean=[mean] * 3, image_std=[std] * 3)


# --- the collator ----------------------------------------------------------------------------------
def test_pictures_in_every_form_are_processed_to_one_batch(tmp_path):
    black = np.zeros((5, 7, 3), np.uint8)
    white = np.full((12, 12, 3), 255, np.uint8)
    PIL.fromarray(white).save(tmp_path / "white.png")
    gray = PIL.fromarray(np.full((3, 3), 51, np.uint8), mode="L").convert("RGB")
    batch = DataCollatorForImageClassification(processor())([
        {"image": black, "label": 0}, {"image": str(tmp_path / "white.png"), "label": 1},
        {"image": gray, "labels": np.int64(2)}, {"image": torch.from_numpy(white).permute(2, 0, 1), "label_ids": 3}])
    x = batch["pixel_values"]
    assert x.dtype == torch.float32 and tuple(x.shape) == (4, 3, 8, 8)
    # (v / 255 - 0.5) / 0.5 for the uniform pictures: black -1, white 1, gray 51 -> -0.6
    assert torch.allclose(x[0], torch.full((3, 8, 8), -1.0))
    assert torch.allclose(x[1], torch.full((3, 8, 8), 1.0)) and torch.allclose(x[3], x[1])
    assert torch.allclose(x[2], torch.full((3, 8, 8), -0.6), atol=1e-6)
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1, 2, 3]
    assert set(batch) == {"pixel_values", "labels"}


def test_processed_pixel_values_are_stacked_as_they_are():
    a = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    rows = [{"pixel_values": a, "label": torch.tensor(4)},
            {"pixel_values": torch.ones(1, 2, 3, 4, dtype=torch.float16), "label": 9},
            {"pixel_values": (-a).tolist(), "label": 0}]
    batch = DataCollatorForImageClassification()(rows)
    assert batch["pixel_values"].dtype == torch.float32 and tuple(batch["pixel_values"].shape) == (3, 2, 3, 4)
    assert batch["pixel_values"][0].tolist() == a.tolist() and batch["pixel_values"][2].tolist() == (-a).tolist()
    assert bool((batch["pixel_values"][1] == 1).all())
    assert batch["labels"].tolist() == [4, 9, 0] and batch["labels"].dtype == torch.long
    unlabelled = DataCollatorForImageClassification()([{"pixel_values": a}, {"pixel_values": a}])
    assert set(unlabelled) == {"pixel_values"}


def test_label_names_and_multi_label_vectors():
    x = np.zeros((3, 2, 2), np.float32)
    named = DataCollatorForImageClassification(label2id={"cat": 0, "dog": 1})(
        [{"pixel_values": x, "label": "dog"}, {"pixel_values": x, "label": "cat"}])
    assert named["labels"].tolist() == [1, 0]
    multi = DataCollatorForImageClassification()(
        [{"pixel_values": x, "labels": [1.0, 0.0, 1.0]}, {"pixel_values": x, "labels": np.array([0.0, 1.0, 0.0])}])
    assert multi["labels"].dtype == torch.float32 and multi["labels"].tolist() == [[1, 0, 1], [0, 1, 0]]


def test_named_errors():
    x = np.zeros((3, 4, 4), np.float32)
    collate = DataCollatorForImageClassification(processor())
    with pytest.raises(InvalidInputError, match="none of"):
        collate([{"text": "seven", "label": 7}])
    with pytest.raises(InvalidInputError, match="mixes"):
        collate([{"pixel_values": x, "label": 0}, {"image": np.zeros((5, 6, 3), np.uint8), "label": 1}])
    with pytest.raises(InvalidInputError, match="both"):
        collate([{"pixel_values": x, "image": np.zeros((5, 6, 3), np.uint8)}])
    with pytest.raises(InvalidInputError, match=r"different sizes \[\(3, 4, 4\), \(3, 5, 5\)\]"):
        collate([{"pixel_values": x, "label": 0}, {"pixel_values": np.zeros((3, 5, 5)), "label": 1}])
    with pytest.raises(InvalidInputError, match="shape"):
        collate([{"pixel_values": np.zeros((4, 4)), "label": 0}])
    with pytest.raises(InvalidInputError, match="no label"):
        collate([{"pixel_values": x, "label": 0}, {"pixel_values": x}])
    with pytest.raises(InvalidInputError, match="label2id"):
        collate([{"pixel_values": x, "label": "cat"}])
    with pytest.raises(InvalidInputError, match="'bird'"):
        DataCollatorForImageClassification(label2id={"cat": 0})([{"pixel_values": x, "label": "bird"}])
    with pytest.raises(InvalidInputError, match="one class id per example"):
        collate([{"pixel_values": x, "label": [1, 0, 1]}])
    with pytest.raises(InvalidInputError, match="image_processor"):
        DataCollatorForImageClassification()([{"image": np.zeros((5, 6, 3), np.uint8), "label": 0}])
    with pytest.raises(InvalidInputError, match="image_processor"):
        DataCollatorForImageClassification("vit")
    with pytest.raises(InvalidInputError, match="not a dict"):
        collate([x])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        collate([])


def test_exported_from_the_package_and_docstring_example_runs():
    import doctest

    import pretrained
    import pretrained.training.vision as module

    assert pretrained.DataCollatorForImageClassification is DataCollatorForImageClassification
    assert "DataCollatorForImageClassification" in pretrained.__all__
    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0


# --- a tiny ViT trained with the Trainer, then the pipeline -----------------------------------------
def tiny_vit(num_labels=2):
    from pretrained.models.vit import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    labels = ["top", "bottom"][:num_labels]
    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, num_labels=num_labels, id2label=dict(enumerate(labels)),
                       label2id={w: i for i, w in enumerate(labels)})
    return ViTForImageClassification.from_config(config)


def bars(n=16):
    """16x16 pictures, bright in the top half (label 0) or the bottom half (1), with noise."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = i % 2
        image = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
        image[(slice(0, 8), slice(8, 16))[label]] += 180
        rows.append({"image": image, "label": label})
    return rows


def test_trainer_lowers_the_loss_of_a_tiny_vit_then_the_pipeline_serves_it(tmp_path):
    from pretrained import pipeline

    proc = processor(16)
    collate = DataCollatorForImageClassification(proc)
    data = [{"pixel_values": proc(r["image"])["pixel_values"][0], "label": r["label"]} for r in bars()]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=16,
                             learning_rate=1e-3, lr_scheduler_type="constant", save_strategy="no",
                             disable_tqdm=True, seed=0)
    trainer = Trainer(model=tiny_vit(), args=args, train_dataset=data, eval_dataset=data, data_collator=collate,
                      processing_class=proc)
    before = trainer.evaluate()["eval_loss"]
    out = trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert out.global_step == 2 and after < before - 1e-3, (before, after)

    trainer.save_model(str(tmp_path / "model"))
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in (tmp_path / "model").iterdir()}
    clf = pipeline("image-classification", model=str(tmp_path / "model"))
    images = [r["image"] for r in bars()[:4]]
    got = clf([PIL.fromarray(im) for im in images])
    model = trainer.model.eval()
    with torch.no_grad():
        probs = model(pixel_values=collate([{"pixel_values": d["pixel_values"]} for d in data[:4]])[
            "pixel_values"]).logits.softmax(-1)
    for g, p in zip(got, probs):
        assert [o["label"] for o in g] == [["top", "bottom"][int(j)] for j in p.argsort(descending=True)]
        assert [o["score"] for o in g] == pytest.approx(p.sort(descending=True).values.tolist(), abs=1e-5)


def test_raw_pictures_train_through_the_collator(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4,
                             save_strategy="no", disable_tqdm=True, remove_unused_columns=False)
    out = Trainer(model=tiny_vit(), args=args, train_dataset=bars(8),
                  data_collator=DataCollatorForImageClassification(processor(16))).train()
    assert out.global_step == 2 and np.isfinite(out.training_loss)


# --- LoRA on ViT ---------------------------------------------------------------------------------
def test_lora_on_vit_trains_only_the_adapter_and_reloads(tmp_path):
    from pretrained.auto import AutoModelForImageClassification
    from pretrained.peft import LoraConfig, LoraLinear, PeftModel, get_peft_model

    folder = MODELS / "vit-tiny-imgcls"
    proc = ViTImageProcessor.from_pretrained(folder)
    rng = np.random.default_rng(1)
    rows = [{"pixel_values": proc(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8))["pixel_values"][0],
             "label": i % 3} for i in range(12)]
    torch.manual_seed(0)
    base = AutoModelForImageClassification.from_pretrained(folder)
    assert type(base).__name__ == "ViTForImageClassification"
    original = {k: v.clone() for k, v in base.state_dict().items()}
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoraLinear)]
    assert len(wrapped) == 2 * base.config.num_hidden_layers and all(n.endswith(("query", "value")) for n in wrapped)
    collate = DataCollatorForImageClassification(proc)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=6, per_device_train_batch_size=12,
                             learning_rate=5e-2, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows, data_collator=collate)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before, (before, after)

    trained = model.get_base_model().state_dict()
    lora = {k for k in trained if ".lora_" in k}
    assert lora and all(torch.equal(v, original[k.replace(".base_layer", "")]) for k, v in trained.items()
                        if k not in lora)
    assert all(not torch.equal(trained[k], torch.zeros_like(trained[k])) for k in lora if "lora_B" in k)

    model.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    again = PeftModel.from_pretrained(AutoModelForImageClassification.from_pretrained(folder), tmp_path / "adapter")
    batch = collate(rows[:3])
    batch.pop("labels")
    model.eval()
    again.eval()
    with torch.no_grad():
        want = model(**batch).logits
        got = again(**batch).logits
        plain = AutoModelForImageClassification.from_pretrained(folder)(**batch).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(plain, want, atol=1e-4)   # the adapter is what changed the outputs


# --- the helpers of examples/train_image_classifier.py ------------------------------------------
@pytest.fixture(scope="module")
def example():
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_image_classifier
    finally:
        sys.path.remove(str(EXAMPLES))
    return train_image_classifier


def test_digits_are_scaled_to_0_255_and_upscaled_in_4x4_blocks(example):
    image = np.zeros((1, 8, 8))
    image[0, 0, 0], image[0, 7, 7], image[0, 3, 4] = 16, 8, 1
    (pic,) = example.digits_to_pil(image)
    assert pic.mode == "RGB" and pic.size == (32, 32)
    a = np.asarray(pic)
    assert (a[:4, :4] == 255).all() and (a[28:, 28:] == 128).all() and (a[12:16, 16:20] == 16).all()
    assert a.sum() == 16 * 3 * (255 + 128 + 16)


def test_the_split_is_stratified_disjoint_and_fixed(example):
    from sklearn.datasets import load_digits

    data = example.load()
    sizes = {k: len(v["labels"]) for k, v in data.items()}
    assert sizes == {"train": 1293, "validation": 144, "test": 360}
    index = [set(v["index"]) for v in data.values()]
    assert not (index[0] & index[1] or index[0] & index[2] or index[1] & index[2])
    assert len(set.union(*index)) == 1797
    target = load_digits().target
    for v in data.values():
        assert v["labels"] == target[v["index"]].tolist()
    counts = np.bincount(data["test"]["labels"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37   # 20% of each digit's ~180
    assert example.load()["test"]["index"] == data["test"]["index"]
    # each picture is its own digit: the top-left pixel of each 4x4 block gives back the 8x8 image
    for k in (0, 100):
        i = data["test"]["index"][k]
        small = np.asarray(data["test"]["images"][k])[::4, ::4, 0]
        assert (small == np.rint(load_digits().images[i] * 255 / 16)).all()


def test_the_digit_vit_config(example):
    model = example.build_model()
    c = model.config
    assert (c.image_size, c.patch_size, c.hidden_size, c.num_hidden_layers) == (32, 8, 128, 4)
    assert c.id2label == {i: str(i) for i in range(10)} and c.label2id == {str(i): i for i in range(10)}
    proc = example.image_processor(0.3, 0.4)
    x = proc(np.full((32, 32, 3), 255, np.uint8), return_tensors="pt")["pixel_values"]
    assert tuple(x.shape) == (1, 3, 32, 32) and torch.allclose(x, torch.full_like(x, 0.7 / 0.4))
    assert json.loads(proc.to_json_string())["size"] == {"height": 32, "width": 32}


def test_the_digit_convnext_config_and_processor_keep_the_digit_whole(example):
    model = example.build_convnext([32, 64], [2, 2])
    c = model.config
    assert (c.model_type, c.num_stages, c.hidden_sizes, c.depths, c.patch_size) == ("convnext", 2, [32, 64], [2, 2], 2)
    assert c.drop_path_rate == 0.1 and c.id2label == {i: str(i) for i in range(10)}
    proc = example.image_processor(0.3, 0.4, "convnext")
    assert type(proc).__name__ == "ConvNextImageProcessor"
    assert json.loads(proc.to_json_string())["size"] == {"shortest_edge": 32}
    digits = example.load()["test"]["images"][:4]
    got = proc(digits, return_tensors="pt")["pixel_values"]
    # crop_pct 1 at 32: nothing resampled or cropped, the 32x32 digit only rescaled and normalised
    want = torch.tensor(np.stack([np.asarray(d, dtype=np.float64).transpose(2, 0, 1) for d in digits]) / 255.0)
    assert got.shape == (4, 3, 32, 32) and torch.allclose(got.double(), (want - 0.3) / 0.4, atol=1e-5)
    with torch.no_grad():
        assert model.eval()(pixel_values=got).logits.shape == (4, 10)
