"""Build the tiny pipeline checkpoints and record the reference pipelines' outputs on them.

Imports the reference (`transformers`). Run it with the reference venv:

    /work/refvenv/bin/python scripts/golden_pipelines.py

(``scripts/make_goldens.py pipelines`` calls :func:`main` too.) Which reference gives which goldens:

* text-classification, token-classification, fill-mask, feature-extraction: transformers 5.x
  (the interpreter running this script);
* question-answering: transformers==4.57.6, the last release with that pipeline (5.x removed it).
  The script re-invokes itself as ``$PRETRAINED_REF457_PYTHON scripts/golden_pipelines.py --qa``
  (default interpreter: /work/refvenv457/bin/python).

Writes, under tests/fixtures/:
  models/pipe-bert-*/           tiny BERT checkpoints with a head each (random weights, perturbed so
                                that scores are distinct and the argmax is stable), saved by the
                                reference, plus the uncased WordPiece tokenizer of
                                tokenizers/bert_wordpiece (vocab 500, model_max_length 64)
  goldens/pipelines/<task>.json  per case: the pipeline's init kwargs, the call (inputs + kwargs,
                                and how the inputs are passed: value, generator or keywords), and
                                the reference's output, or the error it raised (type and message)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "tests" / "fixtures"
OUT = FIX / "goldens" / "pipelines"
TOKENIZER = FIX / "tokenizers" / "bert_wordpiece"
REF457 = os.environ.get("PRETRAINED_REF457_PYTHON", "/work/refvenv457/bin/python")

SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64)
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
# folder -> (reference class, config extras, head perturbation std)
MODELS: dict[str, tuple[str, dict, float]] = {
    "pipe-bert-sentiment": ("BertForSequenceClassification",
                            {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}}, 1.0),
    "pipe-bert-multilabel": ("BertForSequenceClassification",
                             {"id2label": {0: "sports", 1: "politics", 2: "science"},
                              "problem_type": "multi_label_classification"}, 1.0),
    "pipe-bert-score": ("BertForSequenceClassification", {"num_labels": 1}, 1.0),
    "pipe-bert-regression": ("BertForSequenceClassification",
                             {"num_labels": 1, "problem_type": "regression"}, 1.0),
    "pipe-bert-ner": ("BertForTokenClassification", {"id2label": NER_LABELS}, 0.4),
    "pipe-bert-qa": ("BertForQuestionAnswering", {}, 1.0),
    "pipe-bert-mlm": ("BertForMaskedLM", {}, 0.5),
}

# --- texts ---------------------------------------------------------------------------------------
TEXTS = [
    "hello world",
    "My name is Wolfgang and I live in Berlin",
    "The quick brown fox jumps over the lazy dog in Zürich and München.",
    "she walked to the international organization, then @ the café 🤗",
    "  leading and trailing spaces  ",
    "multiple   spaces\tand\nnewlines, unbelievable!",
]
LONG = " ".join(
    [
        "Wolfgang walked from Zürich to München while talking about the transformer model.",
        "The lazy dog @ the international organization was playing with a python library.",
        "She said hello world to Berlin, then the quick brown fox jumps over the data set.",
    ]
    * 3
)  # about 200 tokens: over model_max_length (64)
LONG2 = "hello world. " + " ".join(["training the embedding layer of the attention matrix"] * 12)


# --- helpers -------------------------------------------------------------------------------------
ROUND = 0  # decimals kept for floats (0: all); feature vectors are stored to 6 decimals


def jsonable(x: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        return {"tensor_shape": list(x.shape), "values": jsonable(x.tolist())}
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if not ROUND else round(float(x), ROUND)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    return x


def build_models() -> None:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(TOKENIZER)
    for name, (cls_name, extra, head_std) in MODELS.items():
        tok_config = json.loads((TOKENIZER / "tokenizer_config.json").read_text())
        vocab = len(json.loads((TOKENIZER / "tokenizer.json").read_text())["model"]["vocab"])
        config = transformers.BertConfig(vocab_size=vocab, **SHAPE, **extra)
        torch.manual_seed(sum(map(ord, name)))
        model = getattr(transformers, cls_name)(config).eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                p.add_(torch.randn_like(p) * 0.1)  # away from the init values
                if pname.startswith(("classifier.", "qa_outputs.")) and pname.endswith("weight"):
                    p.add_(torch.randn_like(p) * head_std)  # distinct scores, stable argmax
            if name == "pipe-bert-ner":
                # centred logits, then some "O" so that entities are separate, and I- tags that
                # continue them
                enc = tokenizer(TEXTS + [LONG2], padding=True, truncation=True, return_tensors="pt")
                logits = model(**enc).logits[enc["attention_mask"].bool()]
                model.classifier.bias.sub_(logits.mean(dim=0))
                model.classifier.bias.add_(torch.tensor([0.8, 0.0, 0.4, 0.0, 0.4]))
            if name == "pipe-bert-mlm":
                model.bert.embeddings.word_embeddings.weight.add_(
                    torch.randn_like(model.bert.embeddings.word_embeddings.weight) * head_std)
                model.cls.predictions.bias.add_(torch.randn_like(model.cls.predictions.bias))
            if cls_name == "BertForSequenceClassification":  # centre the logits: both labels occur
                enc = tokenizer(TEXTS + [LONG2], padding=True, truncation=True, return_tensors="pt")
                model.classifier.bias.sub_(model(**enc).logits.mean(dim=0))
        folder = FIX / "models" / name
        shutil.rmtree(folder, ignore_errors=True)
        model.save_pretrained(folder)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(TOKENIZER / f, folder / f)
        assert tok_config["model_max_length"] == SHAPE["max_position_embeddings"]
        print(f"  {name}: {cls_name}, vocab {vocab}")


class Recorder:
    """Runs cases through reference pipelines (cached per model + init kwargs) and keeps the results."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.cases: list[dict] = []
        self._pipes: dict[str, Any] = {}

    def pipe(self, model: str, init: dict):
        import transformers

        key = json.dumps([model, init], sort_keys=True)
        if key not in self._pipes:
            self._pipes[key] = transformers.pipeline(self.task, model=str(FIX / "models" / model),
                                                     device="cpu", **init)
        return self._pipes[key]

    def case(self, name: str, model: str, inputs: Any, *, init: dict | None = None,
             kwargs: dict | None = None, kind: str = "value") -> None:
        init, kwargs = init or {}, kwargs or {}
        record = {"name": name, "model": model, "init": init, "kind": kind, "inputs": inputs,
                  "kwargs": kwargs}
        try:
            pipe = self.pipe(model, init)
            if kind == "generator":
                out = list(pipe((x for x in inputs), **kwargs))
            elif kind == "keywords":
                out = pipe(**inputs, **kwargs)
            else:
                out = pipe(inputs, **kwargs)
            record["output"] = jsonable(out)
        except Exception as e:  # the reference's behaviour on a bad input is a golden too
            record["error"] = {"type": type(e).__name__, "message": str(e)[:400]}
        assert all(c["name"] != name for c in self.cases), name
        self.cases.append(record)

    def write(self, filename: str) -> None:
        import transformers

        OUT.mkdir(parents=True, exist_ok=True)
        data = {"task": self.task, "reference": f"transformers=={transformers.__version__}",
                "cases": self.cases}
        # One case per line: small files, readable diffs.
        lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in self.cases]
        head = json.dumps({k: v for k, v in data.items() if k != "cases"}, ensure_ascii=False)[:-1]
        (OUT / filename).write_text(head + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n")
        errors = sum("error" in c for c in self.cases)
        print(f"  {filename}: {len(self.cases)} cases ({errors} recorded errors)")


# --- text-classification -------------------------------------------------------------------------
def text_classification() -> None:
    r = Recorder("text-classification")
    s = "pipe-bert-sentiment"
    r.case("single", s, TEXTS[0])
    r.case("list", s, TEXTS)
    r.case("single_top_k_none", s, TEXTS[1], kwargs={"top_k": None})
    r.case("list_top_k_none", s, TEXTS[:3], kwargs={"top_k": None})
    r.case("single_top_k_1", s, TEXTS[2], kwargs={"top_k": 1})
    r.case("list_top_k_1", s, TEXTS[:3], kwargs={"top_k": 1})
    r.case("single_top_k_2", s, TEXTS[3], kwargs={"top_k": 2})
    r.case("list_top_k_0", s, TEXTS[:2], kwargs={"top_k": 0})
    r.case("init_top_k_2_single", s, TEXTS[0], init={"top_k": 2})
    r.case("init_top_k_2_list", s, TEXTS[:2], init={"top_k": 2})
    r.case("init_top_k_none_call_top_k_1", s, TEXTS[0], init={"top_k": None}, kwargs={"top_k": 1})
    for fn in ("sigmoid", "softmax", "none"):
        r.case(f"function_{fn}", s, TEXTS[:3], kwargs={"function_to_apply": fn, "top_k": None})
    r.case("init_function_sigmoid", s, TEXTS[:2], init={"function_to_apply": "sigmoid"})
    r.case("pair_single", s, {"text": "hello world", "text_pair": "the lazy dog"})
    r.case("pair_list", s, [{"text": "hello", "text_pair": "world"},
                            {"text": TEXTS[1], "text_pair": TEXTS[2]}], kwargs={"top_k": None})
    r.case("pair_legacy_list_of_list", s, [["hello world", "the lazy dog"]])
    r.case("batch_2", s, TEXTS, kwargs={"batch_size": 2, "top_k": None})
    r.case("batch_4", s, TEXTS + TEXTS[:3], kwargs={"batch_size": 4})
    r.case("init_batch_3", s, TEXTS, init={"batch_size": 3})
    r.case("generator", s, TEXTS[:4], kind="generator")
    r.case("generator_batch_3", s, TEXTS, kind="generator", kwargs={"batch_size": 3, "top_k": 2})
    r.case("empty_string", s, "")
    r.case("whitespace_only", s, "   \t\n ")
    r.case("long_truncated", s, LONG, kwargs={"truncation": True})
    r.case("long_max_length", s, LONG, kwargs={"truncation": True, "max_length": 20})
    r.case("long_no_truncation", s, LONG)
    r.case("multilabel_default", "pipe-bert-multilabel", TEXTS[:3], kwargs={"top_k": None})
    r.case("multilabel_single", "pipe-bert-multilabel", TEXTS[1])
    r.case("multilabel_softmax", "pipe-bert-multilabel", TEXTS[:2],
           kwargs={"top_k": None, "function_to_apply": "softmax"})
    r.case("one_label_default_sigmoid", "pipe-bert-score", TEXTS[:3])
    r.case("one_label_top_k_none", "pipe-bert-score", TEXTS[0], kwargs={"top_k": None})
    r.case("regression_default_none", "pipe-bert-regression", TEXTS[:3])
    r.case("regression_sigmoid", "pipe-bert-regression", TEXTS[:2],
           kwargs={"function_to_apply": "sigmoid"})
    r.write("text_classification.json")


# --- token-classification ------------------------------------------------------------------------
STRATEGIES = ("none", "simple", "first", "average", "max")


def token_classification() -> None:
    r = Recorder("token-classification")
    n = "pipe-bert-ner"
    r.case("default_single", n, TEXTS[1])
    r.case("default_list", n, TEXTS)
    for st in STRATEGIES:
        init = {"aggregation_strategy": st}
        r.case(f"{st}_list", n, TEXTS, init=init)
        r.case(f"{st}_batch_3", n, TEXTS, init=init, kwargs={"batch_size": 3})
        r.case(f"{st}_keep_O", n, TEXTS[1:3], init=init, kwargs={"ignore_labels": []})
        r.case(f"{st}_ignore_PER", n, TEXTS[1:3], init=init, kwargs={"ignore_labels": ["O", "B-PER", "PER"]})
        r.case(f"{st}_split_words", n, ["My", "name", "is", "Wolfgang", "in", "Zürich!"], init=init,
               kwargs={"is_split_into_words": True})
        r.case(f"{st}_long_truncated", n, LONG, init=init)
        if st != "none":
            for stride in (5, 16, 40):
                r.case(f"{st}_long_stride_{stride}", n, LONG, init=init, kwargs={"stride": stride})
            r.case(f"{st}_long2_stride_16", n, LONG2, init=init, kwargs={"stride": 16})
            r.case(f"{st}_long_list_stride_batch", n, [LONG, TEXTS[1], LONG2], init=init,
                   kwargs={"stride": 10, "batch_size": 4})
    r.case("call_aggregation_simple", n, TEXTS[2], kwargs={"aggregation_strategy": "simple"})
    r.case("split_words_delimiter", n, [["hello", "world"], ["Berlin", "and", "München"]],
           init={"aggregation_strategy": "simple"},
           kwargs={"is_split_into_words": True, "delimiter": "__"})
    r.case("none_with_stride", n, LONG, kwargs={"stride": 8})
    r.case("stride_too_large", n, LONG, init={"aggregation_strategy": "simple"}, kwargs={"stride": 64})
    r.case("generator", n, TEXTS[:3], kind="generator", init={"aggregation_strategy": "first"})
    r.case("empty_string", n, "", init={"aggregation_strategy": "simple"})
    r.case("whitespace_only", n, "  \n\t ", init={"aggregation_strategy": "simple"})
    r.case("empty_string_none", n, "")
    r.write("token_classification.json")


# --- fill-mask -----------------------------------------------------------------------------------
def fill_mask() -> None:
    r = Recorder("fill-mask")
    m = "pipe-bert-mlm"
    one = "the quick brown [MASK] jumps over the lazy dog."
    two = "hello [MASK], the [MASK] is learning."
    r.case("single", m, one)
    r.case("single_top_k_3", m, one, kwargs={"top_k": 3})
    r.case("single_top_k_1", m, "hello [MASK]", kwargs={"top_k": 1})
    r.case("init_top_k_2", m, one, init={"top_k": 2})
    r.case("list", m, [one, "[MASK] world", "My name is Wolfgang and I live in [MASK]."])
    r.case("list_of_one", m, [one])
    r.case("two_masks", m, two)
    r.case("two_masks_top_k_2", m, two, kwargs={"top_k": 2})
    r.case("three_masks_list", m, [two, "[MASK] [MASK] [MASK]", one], kwargs={"top_k": 2})
    r.case("targets_in_vocab", m, one, kwargs={"targets": ["fox", "dog", "the", "model"]})
    r.case("targets_str", m, one, kwargs={"targets": "dog"})
    r.case("targets_top_k_cap", m, one, kwargs={"targets": ["fox", "dog"], "top_k": 10})
    r.case("targets_top_k_1", m, one, kwargs={"targets": ["fox", "dog", "cat"], "top_k": 1})
    r.case("targets_not_in_vocab", m, one, kwargs={"targets": ["zurichx", "Dog", "cat", "fox"]})
    r.case("targets_duplicates", m, one, kwargs={"targets": ["dog", "dog", "Dog"]})
    r.case("targets_empty_string", m, one, kwargs={"targets": ["", "dog"]})
    r.case("targets_only_empty", m, one, kwargs={"targets": [""]})
    r.case("targets_two_masks", m, two, kwargs={"targets": ["world", "model", "dog"]})
    r.case("batch_2", m, [one, two, "[MASK] world", "the [MASK]"], kwargs={"batch_size": 2})
    r.case("batch_3_targets", m, [one, "[MASK] world", "the [MASK] dog is lazy"],
           kwargs={"batch_size": 3, "targets": ["fox", "dog"]})
    r.case("generator", m, [one, "[MASK] world"], kind="generator", kwargs={"top_k": 2})
    r.case("no_mask", m, "hello world")
    r.case("no_mask_in_list", m, ["hello [MASK]", "hello world"])
    r.case("empty_string", m, "")
    r.case("mask_only", m, "[MASK]")
    r.case("long_truncated", m, "[MASK] " + LONG, kwargs={"tokenizer_kwargs": {"truncation": True}})
    r.write("fill_mask.json")


# --- feature-extraction --------------------------------------------------------------------------
def feature_extraction() -> None:
    global ROUND
    ROUND = 6
    r = Recorder("feature-extraction")
    m = "pipe-bert-mlm"  # the encoder of a masked-LM checkpoint (AutoModel drops the head)
    r.case("single", m, TEXTS[0])
    r.case("list", m, TEXTS[:3])
    r.case("return_tensors", m, TEXTS[1], kwargs={"return_tensors": True})
    r.case("truncation", m, LONG, kwargs={"truncation": True})
    r.case("tokenize_kwargs", m, TEXTS[2], kwargs={"tokenize_kwargs": {"max_length": 6, "truncation": True}})
    r.case("pair_tokenize_kwargs", m, "hello", kwargs={"tokenize_kwargs": {"text_pair": "world"}})
    r.case("empty_string", m, "")
    r.case("batch_2", m, TEXTS[:3], kwargs={"batch_size": 2})
    r.case("generator", m, TEXTS[:2], kind="generator")
    r.write("feature_extraction.json")


# --- question-answering (transformers 4.57.6) ----------------------------------------------------
QA_CONTEXT = "My name is Wolfgang and I live in Berlin. The quick brown fox jumps over the lazy dog."
QA_LONG = (
    "Wolfgang walked from Zürich to München while talking about the transformer model. "
    "The lazy dog was playing with a python library near the international organization. "
    "She said hello world to Berlin, then the quick brown fox jumps over the data set. "
    "Training the embedding layer of the attention matrix is a learning method for the model. "
    "The runner won the number list test, unbelievable! They've set a new value when running."
)  # about 110 tokens: several windows at max_seq_len 64


def question_answering() -> None:
    r = Recorder("question-answering")
    q = "pipe-bert-qa"
    kw = lambda question, context: {"question": question, "context": context}  # noqa: E731
    r.case("single", q, kw("Where do I live?", QA_CONTEXT), kind="keywords")
    r.case("top_k_3", q, kw("Where do I live?", QA_CONTEXT), kind="keywords", kwargs={"top_k": 3})
    r.case("top_k_20", q, kw("What jumps?", QA_CONTEXT), kind="keywords", kwargs={"top_k": 20})
    r.case("max_answer_len_2", q, kw("Who am I?", QA_CONTEXT), kind="keywords",
           kwargs={"max_answer_len": 2, "top_k": 4})
    r.case("impossible", q, kw("Where do I live?", QA_CONTEXT), kind="keywords",
           kwargs={"handle_impossible_answer": True, "top_k": 2})
    r.case("impossible_top_1", q, kw("What is the stock price?", "hello world"), kind="keywords",
           kwargs={"handle_impossible_answer": True})
    r.case("no_align", q, kw("Where do I live?", QA_CONTEXT), kind="keywords",
           kwargs={"align_to_words": False, "top_k": 3})
    r.case("long_default_stride", q, kw("Who walked to München?", QA_LONG), kind="keywords",
           kwargs={"top_k": 3})
    r.case("long_stride_16", q, kw("Who walked to München?", QA_LONG), kind="keywords",
           kwargs={"doc_stride": 16, "top_k": 5})
    r.case("long_seq_48_stride_8", q, kw("What is the model?", QA_LONG), kind="keywords",
           kwargs={"max_seq_len": 48, "doc_stride": 8, "top_k": 2, "max_answer_len": 5})
    r.case("long_impossible", q, kw("Who walked to München?", QA_LONG), kind="keywords",
           kwargs={"handle_impossible_answer": True, "doc_stride": 20, "top_k": 3})
    r.case("dict_input", q, {"question": "What jumps?", "context": QA_CONTEXT})
    r.case("list_of_dicts", q, [{"question": "What jumps?", "context": QA_CONTEXT},
                                {"question": "Who said hello?", "context": QA_LONG}])
    r.case("questions_list_one_context", q, kw(["Who am I?", "Where?"], QA_CONTEXT), kind="keywords")
    r.case("questions_and_contexts", q, kw(["Who am I?", "What is it?"], [QA_CONTEXT, "hello world"]),
           kind="keywords", kwargs={"top_k": 2})
    r.case("batch_3", q, [{"question": "What jumps?", "context": QA_CONTEXT},
                          {"question": "Who said hello?", "context": QA_LONG},
                          {"question": "Why?", "context": "because @ the café 🤗"}],
           kwargs={"batch_size": 3, "top_k": 2})
    r.case("generator", q, [{"question": "What jumps?", "context": QA_CONTEXT},
                            {"question": "Who?", "context": QA_LONG}], kind="generator")
    r.case("short_context", q, kw("Who?", "Berlin"), kind="keywords", kwargs={"top_k": 3})
    r.case("whitespace_context", q, kw("Who?", "   "), kind="keywords", kwargs={"top_k": 2})
    r.case("empty_question", q, kw("", QA_CONTEXT), kind="keywords")
    r.case("empty_context", q, kw("Who?", ""), kind="keywords")
    r.case("question_too_long", q, kw(" ".join(["why"] * 80), QA_CONTEXT), kind="keywords")
    r.case("top_k_0", q, kw("Who?", QA_CONTEXT), kind="keywords", kwargs={"top_k": 0})
    r.case("stride_over_seq_len", q, kw("Who?", QA_CONTEXT), kind="keywords",
           kwargs={"doc_stride": 100, "max_seq_len": 40})
    r.case("max_answer_len_0", q, kw("Who?", QA_CONTEXT), kind="keywords", kwargs={"max_answer_len": 0})
    r.write("question_answering.json")


def main() -> None:
    import transformers

    if "--qa" in sys.argv:
        question_answering()
        return
    if not transformers.__version__.startswith("5."):
        raise SystemExit(f"run with transformers 5.x (got {transformers.__version__}); the "
                         "question-answering part runs itself under transformers 4.57 (--qa)")
    build_models()
    text_classification()
    token_classification()
    fill_mask()
    feature_extraction()
    subprocess.run([REF457, str(Path(__file__).resolve()), "--qa"], check=True)


if __name__ == "__main__":
    main()
