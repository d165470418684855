"""pipeline(): the task registry, model/tokenizer resolution, parameters, batching, streaming,
device and dtype; on the tiny pipe-bert-* checkpoints (tests/fixtures/models)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline_goldens import case, model_path
from pretrained.errors import InvalidInputError, RemoteCodeError
from pretrained.pipelines import TASKS, check_task, pipeline, supported_tasks

ROOT = Path(__file__).resolve().parent.parent
SENTIMENT = model_path("pipe-bert-sentiment")
TEXTS = case("text_classification.json", "list")["inputs"]


@pytest.fixture(scope="module")
def clf():
    return pipeline("text-classification", model=SENTIMENT)


# --- the registry ----------------------------------------------------------------------------
def test_importing_pipelines_is_cheap():
    code = "import pretrained.pipelines, sys; print(' '.join(sys.modules))"
    mods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                              check=True).stdout.split())
    for heavy in ("torch", "numpy", "tokenizers", "pretrained.pipelines.base",
                  "pretrained.pipelines.text_classification"):
        assert heavy not in mods, f"import pretrained.pipelines imported {heavy}"


def test_aliases_and_known_tasks():
    assert check_task("sentiment-analysis").name == "text-classification"
    assert check_task("ner").name == "token-classification"
    assert check_task("sentence-similarity").name == "sentence-embeddings"
    assert {"text-classification", "token-classification", "question-answering", "fill-mask",
            "feature-extraction", "sentence-embeddings", "text-generation", "ner",
            "sentiment-analysis"} <= set(supported_tasks())
    assert TASKS["text-generation"].module == "pretrained.pipelines.text_generation"


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(InvalidInputError, match=r"unknown task 'sentiment'.*text-classification.*token-classification"):
        pipeline("sentiment", model=SENTIMENT)


def test_alias_builds_the_task_pipeline():
    pipe = pipeline("sentiment-analysis", model=SENTIMENT)
    assert type(pipe).__name__ == "TextClassificationPipeline" and pipe.task == "text-classification"
    ner = pipeline("ner", model=model_path("pipe-bert-ner"))
    assert type(ner).__name__ == "TokenClassificationPipeline"


def test_task_is_read_from_the_checkpoint():
    assert type(pipeline(model=SENTIMENT)).__name__ == "TextClassificationPipeline"
    assert type(pipeline(model=model_path("pipe-bert-qa"))).__name__ == "QuestionAnsweringPipeline"
    assert type(pipeline(model=model_path("pipe-bert-mlm"))).__name__ == "FillMaskPipeline"
    with pytest.raises(InvalidInputError, match="needs a task or a model"):
        pipeline()


def test_no_default_model_asks_for_one():
    with pytest.raises(InvalidInputError, match="no default model.*pass model="):
        pipeline("question-answering")


def test_checkpoint_without_the_task_head_is_refused():
    # a masked-LM checkpoint has no trained classifier: the pipeline would answer at random
    with pytest.raises(InvalidInputError, match=r"lacks the text-classification head.*classifier\.weight"):
        pipeline("text-classification", model=model_path("pipe-bert-mlm"))
    with pytest.raises(InvalidInputError, match="lacks the fill-mask head"):
        pipeline("fill-mask", model=model_path("pipe-bert-ner"))


def test_loaded_model_without_the_task_head_is_refused():
    from pretrained import AutoModelForMaskedLM

    mlm = AutoModelForMaskedLM.from_pretrained(model_path("pipe-bert-mlm"))
    with pytest.raises(InvalidInputError, match="needs a model with a sequence-classification head.*BertForMaskedLM"):
        pipeline("text-classification", model=mlm)


def test_loaded_model_and_tokenizer(clf):
    from pretrained import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(SENTIMENT)
    tok = AutoTokenizer.from_pretrained(SENTIMENT)
    pipe = pipeline("text-classification", model=model, tokenizer=tok)
    assert pipe.model is model and pipe.tokenizer is tok
    assert pipe(TEXTS) == clf(TEXTS)
    # without tokenizer=: the one in the folder the model came from
    assert pipeline("text-classification", model=model).tokenizer.name_or_path == SENTIMENT
    model.config.name_or_path = ""
    with pytest.raises(InvalidInputError, match="pass tokenizer="):
        pipeline("text-classification", model=model)
    with pytest.raises(InvalidInputError, match="model_kwargs"):
        pipeline("text-classification", model=model, tokenizer=tok, model_kwargs={"revision": "x"})


def test_remote_code_is_refused():
    with pytest.raises(RemoteCodeError):
        pipeline("text-classification", model=SENTIMENT, trust_remote_code=True)


# --- parameters --------------------------------------------------------------------------------
def test_unknown_parameter_names_the_known_ones(clf):
    with pytest.raises(InvalidInputError, match=r"unknown parameter\(s\) \['topk'\].*'top_k'"):
        clf("hello", topk=2)
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        pipeline("text-classification", model=SENTIMENT, aggregation_strategy="simple")


def test_init_parameters_apply_to_every_call_and_calls_override_them():
    pipe = pipeline("text-classification", model=SENTIMENT, top_k=None, function_to_apply="sigmoid")
    out = pipe(TEXTS[:2])
    assert all(len(r) == 2 for r in out)
    assert pipe(TEXTS[:2], top_k=1) == [r[:1] for r in out]
    soft = pipe(TEXTS[:2], function_to_apply="softmax")
    assert all(abs(sum(d["score"] for d in r) - 1) < 1e-6 for r in soft)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_batch_size_must_be_positive(clf, bad):
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
        clf(TEXTS, batch_size=bad)


# --- inputs: single, list, generator -----------------------------------------------------------
def test_batched_equals_one_by_one(clf):
    texts = TEXTS * 3  # 18 texts of different lengths: sorting within the window must not reorder
    alone = [clf(t, top_k=None) for t in texts]
    for bs in (2, 5, 32):
        batched = clf(texts, batch_size=bs, top_k=None)
        assert [[d["label"] for d in r] for r in batched] == [[d["label"] for d in r] for r in alone]
        for a, b in zip(batched, alone):
            for x, y in zip(a, b):
                assert abs(x["score"] - y["score"]) < 1e-5


def test_generator_input_streams_lazily(clf):
    taken = []

    def texts():
        for t in TEXTS:
            taken.append(t)
            yield t

    out = clf(texts())
    assert not isinstance(out, list) and taken == []  # nothing read before the first result is asked
    first = next(out)
    assert taken == TEXTS[:1] and first == clf(TEXTS[0])[0]
    assert [first, *out] == clf(TEXTS)
    # with a batch size, at most a window of items is read ahead
    taken.clear()
    out = clf(texts(), batch_size=2)
    next(out)
    assert 0 < len(taken) <= 16


def test_other_iterables_and_empty_inputs(clf):
    assert clf(tuple(TEXTS[:2])) == clf(TEXTS[:2])
    assert list(clf(iter(TEXTS[:2]))) == clf(TEXTS[:2])
    assert clf([]) == []
    assert list(clf(x for x in [])) == []
    with pytest.raises(InvalidInputError, match="cannot take int input"):
        clf(42)
    with pytest.raises(InvalidInputError, match="cannot take NoneType input"):
        clf(None)


# --- device, dtype, repr ------------------------------------------------------------------------
def test_device_arguments():
    pipe = pipeline("text-classification", model=SENTIMENT, device=-1)
    assert pipe.device == torch.device("cpu")
    assert pipeline("text-classification", model=SENTIMENT, device="cpu").device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="CUDA is not available"):
            pipeline("text-classification", model=SENTIMENT, device=0)
    with pytest.raises(InvalidInputError, match="is not a device"):
        pipeline("text-classification", model=SENTIMENT, device="gpu-please")


def test_torch_dtype_bfloat16_runs_close_to_float32(clf):
    pipe = pipeline("text-classification", model=SENTIMENT, torch_dtype=torch.bfloat16)
    assert pipe.dtype == torch.bfloat16 and pipe.model.dtype == torch.bfloat16
    ours, ref = pipe(TEXTS, top_k=None), clf(TEXTS, top_k=None)
    for a, b in zip(ours, ref):
        by_label = {d["label"]: d["score"] for d in b}
        for d in a:
            assert isinstance(d["score"], float) and abs(d["score"] - by_label[d["label"]]) < 0.05


def test_repr_names_what_matters(clf):
    text = repr(pipeline("ner", model=model_path("pipe-bert-ner"), aggregation_strategy="simple"))
    assert text.startswith("TokenClassificationPipeline(task='token-classification'")
    for part in ("BertForTokenClassification", "pipe-bert-ner", "device='cpu'", "dtype=float32",
                 "batch_size=1", "aggregation_strategy='simple'"):
        assert part in text


def test_device_map_places_the_pipeline_and_refuses_what_it_cannot():
    path = SENTIMENT
    clf = pipeline("text-classification", model=path, device_map="auto")
    assert str(clf.device) == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert clf("good")[0]["label"] in ("POSITIVE", "NEGATIVE")
    with pytest.raises(InvalidInputError, match="not both"):
        pipeline("text-classification", model=path, device="cpu", device_map="cpu")
    placed = pipeline("text-classification", model=path, device_map={"bert": "cpu", "classifier": "cpu"})
    assert placed.model.hf_device_map == {"bert": "cpu", "classifier": "cpu"}   # tests/test_device_map.py
    with pytest.raises(InvalidInputError, match="does not place"):
        pipeline("text-classification", model=path, device_map={"bert": "cpu"})
