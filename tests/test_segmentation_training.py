"""Training semantic segmentation: DataCollatorForSemanticSegmentation (pictures + maps through the
processor, processed pixel_values + label maps, named errors), a tiny SegFormer trained with the
Trainer and then served by the image-segmentation pipeline, and the helpers of
examples/train_segmenter.py (the mean IoU on a hand-computed case, the shapes and their maps)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrained.errors import InvalidInputError
from pretrained.training import DataCollatorForSemanticSegmentation, Trainer, TrainingArguments
from pretrained.processing import SegformerImageProcessor, ViTImageProcessor

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def processor(size=8, **kw):
    return SegformerImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3, **kw)


# --- the collator ----------------------------------------------------------------------------------
def test_pictures_and_maps_in_every_form_are_processed_together(tmp_path):
    left = np.zeros((6, 6), np.uint8)
    left[:, :3] = 1                       # class 1 on the left half
    PIL.fromarray(left * 2).save(tmp_path / "map.png")
    PIL.fromarray(np.full((6, 6, 3), 255, np.uint8)).save(tmp_path / "white.png")
    rows = [{"image": np.zeros((6, 6, 3), np.uint8), "segmentation_map": left},
            {"image": str(tmp_path / "white.png"), "segmentation_map": str(tmp_path / "map.png")},
            {"image": PIL.fromarray(np.zeros((6, 6, 3), np.uint8)), "segmentation_map": PIL.fromarray(left)}]
    batch = DataCollatorForSemanticSegmentation(processor(12))(rows)
    assert set(batch) == {"pixel_values", "labels"}
    assert tuple(batch["pixel_values"].shape) == (3, 3, 12, 12) and batch["pixel_values"].dtype == torch.float32
    assert torch.allclose(batch["pixel_values"][0], torch.full((3, 12, 12), -1.0))
    assert torch.allclose(batch["pixel_values"][1], torch.full((3, 12, 12), 1.0))
    labels = batch["labels"]
    assert labels.dtype == torch.int64 and tuple(labels.shape) == (3, 12, 12)
    want = torch.zeros(12, 12, dtype=torch.long)
    want[:, :6] = 1                       # nearest resize keeps the ids, doubled in size
    assert torch.equal(labels[0], want) and torch.equal(labels[1], want * 2) and torch.equal(labels[2], want)


def test_other_map_keys_and_label_reduction():
    m = np.array([[0, 1], [2, 255]], np.uint8)
    picture = np.zeros((2, 2, 3), np.uint8)
    collate = DataCollatorForSemanticSegmentation(processor(2, do_reduce_labels=True))
    for key in ("annotation", "label", "labels"):
        batch = collate([{"image": picture, key: m}])
        assert batch["labels"].tolist() == [[[255, 0], [1, 255]]]


def test_processed_rows_are_stacked_and_maps_optional():
    x = np.zeros((3, 4, 4), np.float32)
    rows = [{"pixel_values": x, "labels": np.ones((4, 4), np.int32)},
            {"pixel_values": torch.ones(1, 3, 4, 4), "label": torch.zeros(1, 4, 4, dtype=torch.uint8)}]
    batch = DataCollatorForSemanticSegmentation()(rows)
    assert tuple(batch["pixel_values"].shape) == (2, 3, 4, 4) and batch["labels"].dtype == torch.int64
    assert batch["labels"][0].sum() == 16 and batch["labels"][1].sum() == 0
    assert set(DataCollatorForSemanticSegmentation()([{"pixel_values": x}])) == {"pixel_values"}
    predict = DataCollatorForSemanticSegmentation(processor(4))([{"image": np.zeros((6, 6, 3), np.uint8)}])
    assert set(predict) == {"pixel_values"} and tuple(predict["pixel_values"].shape) == (1, 3, 4, 4)


def test_named_errors():
    x = np.zeros((3, 4, 4), np.float32)
    picture = np.zeros((6, 6, 3), np.uint8)
    collate = DataCollatorForSemanticSegmentation(processor(4))
    with pytest.raises(InvalidInputError, match="no segmentation map"):
        collate([{"image": picture, "segmentation_map": np.zeros((4, 4))}, {"image": picture}])
    with pytest.raises(InvalidInputError, match="several segmentation maps"):
        collate([{"image": picture, "segmentation_map": np.zeros((4, 4)), "annotation": np.zeros((4, 4))}])
    with pytest.raises(InvalidInputError, match="names its maps differently"):
        collate([{"image": picture, "segmentation_map": np.zeros((4, 4))}, {"image": picture, "label": np.zeros((4, 4))}])
    with pytest.raises(InvalidInputError, match=r"different sizes \[\(4, 4\), \(5, 5\)\]"):
        collate([{"pixel_values": x, "labels": np.zeros((4, 4))}, {"pixel_values": x, "labels": np.zeros((5, 5))}])
    with pytest.raises(InvalidInputError, match="not one .height, width. map of class ids"):
        collate([{"pixel_values": x, "labels": np.full((4, 4), 0.5)}])
    with pytest.raises(InvalidInputError, match="not one .height, width. map"):
        collate([{"pixel_values": x, "labels": 3}])
    with pytest.raises(InvalidInputError, match="does not take segmentation maps"):
        DataCollatorForSemanticSegmentation(ViTImageProcessor(size=4))([{"image": picture, "label": np.zeros((4, 4))}])
    with pytest.raises(InvalidInputError, match="image_processor"):
        DataCollatorForSemanticSegmentation()([{"image": picture, "label": np.zeros((4, 4))}])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        collate([])


def test_exported_from_the_package():
    import pretrained

    assert pretrained.DataCollatorForSemanticSegmentation is DataCollatorForSemanticSegmentation
    assert "DataCollatorForSemanticSegmentation" in pretrained.__all__


# --- a tiny SegFormer trained with the Trainer, then the pipeline -------------------------------------
def tiny_segformer():
    from pretrained.models.segformer import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    labels = ["background", "square"]
    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
                             patch_sizes=[3, 3], strides=[2, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                             decoder_hidden_size=16, drop_path_rate=0.0, classifier_dropout_prob=0.0,
                             num_labels=2, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    return SegformerForSemanticSegmentation.from_config(config)


def squares(n=16):
    """16x16 pictures: a bright square (class 1) at a random place on noise (class 0)."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(n):
        image = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
        label_map = np.zeros((16, 16), np.uint8)
        r, c = rng.integers(0, 8, 2)
        image[r:r + 8, c:c + 8] += 180
        label_map[r:r + 8, c:c + 8] = 1
        rows.append({"image": image, "label": label_map})
    return rows


def test_trainer_lowers_the_loss_of_a_tiny_segformer_then_the_pipeline_serves_it(tmp_path):
    from pretrained import pipeline

    proc = processor(16)
    collate = DataCollatorForSemanticSegmentation(proc)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=8, per_device_train_batch_size=16,
                             learning_rate=5e-3, lr_scheduler_type="constant", save_strategy="no",
                             disable_tqdm=True, seed=0, remove_unused_columns=False)
    data = squares()
    trainer = Trainer(model=tiny_segformer(), args=args, train_dataset=data, eval_dataset=data, data_collator=collate,
                      processing_class=proc)
    before = trainer.evaluate()["eval_loss"]
    out = trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert out.global_step == 8 and after < before - 1e-2, (before, after)
    predicted = trainer.predict(data[:2])
    assert predicted.predictions.shape == (2, 2, 8, 8) and predicted.label_ids.shape == (2, 16, 16)

    trainer.save_model(str(tmp_path / "model"))
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in (tmp_path / "model").iterdir()}
    seg = pipeline("image-segmentation", model=str(tmp_path / "model"))
    model = trainer.model.eval()
    for row in data[:3]:
        answers = seg(PIL.fromarray(row["image"]))
        got = np.zeros((16, 16), np.int64)
        for a in answers:
            assert a["score"] is None and a["mask"].size == (16, 16)
            got[np.asarray(a["mask"]) == 255] = model.config.label2id[a["label"]]
        with torch.no_grad():
            logits = model(**{k: v for k, v in collate([row]).items() if k != "labels"}).logits
        want = proc.post_process_semantic_segmentation({"logits": logits}, target_sizes=[(16, 16)])[0]
        assert np.array_equal(got, want.numpy())


# --- the helpers of examples/train_segmenter.py ------------------------------------------------------
@pytest.fixture(scope="module")
def example():
    pytest.importorskip("skimage")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_segmenter
    finally:
        sys.path.remove(str(EXAMPLES))
    return train_segmenter


def test_mean_iou_on_a_hand_computed_case(example):
    truth = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 2],
                     [2, 0, 0, 1]])
    # the two 255 pixels are left out, 10 counted:
    # class 0: truth 4 px, predicted (0,0) (1,0) (1,1) (2,1); 3 in both -> IoU 3 / (4 + 4 - 3) = 3/5
    # class 1: truth 4 px, predicted (0,1) (0,2) (0,3) (1,2); 3 in both -> 3/5
    # class 2: truth 2 px, predicted (1,3) (2,0); 1 in both -> 1 / (2 + 2 - 1) = 1/3
    # class 3: nowhere -> None, not in the mean; 7 of 10 pixels right
    got = example.mean_iou(pred, truth, 4)
    assert got["per_class_iou"][:3] == pytest.approx([3 / 5, 3 / 5, 1 / 3]) and got["per_class_iou"][3] is None
    assert got["mean_iou"] == pytest.approx((3 / 5 + 3 / 5 + 1 / 3) / 3)
    assert got["pixel_accuracy"] == pytest.approx(7 / 10)
    split = example.mean_iou([pred[:1], pred[1:]], [truth[:1], truth[1:]], 4)   # summed over maps, not averaged
    assert split == got
    assert example.mean_iou(truth, truth, 3)["mean_iou"] == 1.0


def test_shapes_and_their_maps(example):
    image, label_map = example.shapes_picture(7)
    assert image.shape == (64, 64, 3) and label_map.shape == (64, 64) and label_map.dtype == np.uint8
    white = (image == 255).all(-1)
    assert ((label_map == 0) == white).all()   # every shape pixel has its class, the white ground none
    assert set(np.unique(label_map)) - {0} and set(np.unique(label_map)) <= set(range(5))
    for cls in set(np.unique(label_map)) - {0}:   # each class region is of the colours of its shapes
        assert len(np.unique(image[label_map == cls], axis=0)) <= 4
    split = example.make_split("test", 3)
    assert split["seeds"][0] >= 200_000 and len(split["images"]) == 3
