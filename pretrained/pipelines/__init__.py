"""Task pipelines: ``pipeline(task, model=...)`` and the registry of tasks.

Importing this package is cheap: each task's module (and torch) is imported when a pipeline of
that task is built.

Tasks (aliases in brackets):

=======================  ===================================================  ====================
task                     what it returns                                      model head
=======================  ===================================================  ====================
text-classification      labels and scores  [sentiment-analysis]              sequence-classification
token-classification     entities with character spans  [ner]                 token-classification
question-answering       answer spans of the context                          question-answering
fill-mask                the best tokens for each mask token                  masked-lm
feature-extraction       token embeddings ``[1, T, H]`` per input             (the encoder)
sentence-embeddings      one pooled, normalised vector per input              (the encoder)
                         [sentence-similarity]
text-generation          generated text                                       causal-lm
summarization            a summary of each text                               seq2seq-lm
translation              a translation of each text                           seq2seq-lm
                         [translation_xx_to_yy: the pair, e.g. translation_en_to_fr]
text2text-generation     the generated text for each input                    seq2seq-lm
automatic-speech-        the text of each audio (+ timestamped chunks)        speech-seq2seq or ctc
recognition
audio-classification     labels and scores for each audio                     audio-classification
image-classification     labels and scores for each picture                   image-classification
image-segmentation       labelled masks for each picture (semantic,           semantic-, instance- or
                         instance, panoptic: ``subtask=``)                    universal-segmentation
object-detection         labelled boxes in pixels for each picture            object-detection
=======================  ===================================================  ====================

Example::

    >>> from pretrained.pipelines import pipeline                                # doctest: +SKIP
    >>> ner = pipeline("ner", model="path/to/ner-model", aggregation_strategy="simple")  # doctest: +SKIP
    >>> ner("My name is Wolfgang and I live in Berlin")                          # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Pipeline

__all__ = ["pipeline", "Task", "TASKS", "TASK_ALIASES", "register_task", "supported_tasks", "check_task"]

logger = logging.getLogger("pretrained")


@dataclass(frozen=True)
class Task:
    """A task: where its pipeline class lives, which Auto class loads its model, its default."""

    name: str
    module: str  # absolute module path of the pipeline class
    class_name: str
    auto_class: str  # the pretrained.auto class that loads a model for it
    default_model: str | None = None  # a pretrained.io.fetch name (reachable here) or None
    defaults: dict[str, Any] = field(default_factory=dict)  # init parameters the task implies
    tokenizer: bool = True  # whether the task needs a tokenizer (audio classification does not)

    def pipeline_class(self) -> type["Pipeline"]:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as e:
            if e.name != self.module:
                raise
            raise InvalidInputError(f"the {self.name!r} pipeline is not available in this version of "
                                    f"pretrained ({self.module} is missing)") from None
        return getattr(module, self.class_name)


TASKS: dict[str, Task] = {}
TASK_ALIASES: dict[str, str] = {
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "sentence-similarity": "sentence-embeddings",
}


def register_task(task: Task, aliases: tuple[str, ...] = ()) -> None:
    """Add (or replace) a task, e.g. from another package."""
    TASKS[task.name] = task
    for alias in aliases:
        TASK_ALIASES[alias] = task.name


_P = __name__
for _task in (
    Task("text-classification", f"{_P}.text_classification", "TextClassificationPipeline",
         "AutoModelForSequenceClassification"),
    Task("token-classification", f"{_P}.token_classification", "TokenClassificationPipeline",
         "AutoModelForTokenClassification"),
    Task("question-answering", f"{_P}.question_answering", "QuestionAnsweringPipeline",
         "AutoModelForQuestionAnswering"),
    Task("fill-mask", f"{_P}.fill_mask", "FillMaskPipeline", "AutoModelForMaskedLM"),
    Task("feature-extraction", f"{_P}.feature_extraction", "FeatureExtractionPipeline", "AutoModel",
         default_model="all-MiniLM-L6-v2"),
    Task("sentence-embeddings", f"{_P}.feature_extraction", "FeatureExtractionPipeline", "AutoModel",
         default_model="all-MiniLM-L6-v2", defaults={"pooling": "auto"}),
    Task("text-generation", f"{_P}.text_generation", "TextGenerationPipeline", "AutoModelForCausalLM",
         default_model="SmolLM2-135M-Instruct-Q4_1-gguf"),
    Task("summarization", f"{_P}.text2text", "SummarizationPipeline", "AutoModelForSeq2SeqLM"),
    Task("translation", f"{_P}.text2text", "TranslationPipeline", "AutoModelForSeq2SeqLM"),
    Task("text2text-generation", f"{_P}.text2text", "Text2TextGenerationPipeline",
         "AutoModelForSeq2SeqLM"),
    Task("automatic-speech-recognition", f"{_P}.automatic_speech_recognition",
         "AutomaticSpeechRecognitionPipeline", "AutoModelForSpeechRecognition",
         default_model="whisper-tiny.en"),
    Task("audio-classification", f"{_P}.audio_classification", "AudioClassificationPipeline",
         "AutoModelForAudioClassification", tokenizer=False),
    Task("image-classification", f"{_P}.image_classification", "ImageClassificationPipeline",
         "AutoModelForImageClassification", tokenizer=False),
    Task("image-segmentation", f"{_P}.image_segmentation", "ImageSegmentationPipeline",
         "AutoModelForImageSegmentation", tokenizer=False),
    Task("object-detection", f"{_P}.object_detection", "ObjectDetectionPipeline", "AutoModelForObjectDetection",
         tokenizer=False),
):
    register_task(_task)
del _task

# Class-name endings of a checkpoint's ``architectures`` -> the task it was trained for.
_ARCH_TASKS = (   # first match wins: the audio models' names before the generic endings
    ("WhisperForConditionalGeneration", "automatic-speech-recognition"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForAudioClassification", "audio-classification"),
    ("Wav2Vec2ForSequenceClassification", "audio-classification"),
    ("HubertForSequenceClassification", "audio-classification"),
    ("ForImageClassification", "image-classification"),
    ("ForImageClassificationWithTeacher", "image-classification"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForUniversalSegmentation", "image-segmentation"),
    ("ForInstanceSegmentation", "image-segmentation"),
    ("DetrForSegmentation", "image-segmentation"),
    ("ForObjectDetection", "object-detection"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("Model", "feature-extraction"),
)


_TRANSLATION_PAIR = re.compile(r"^translation_[A-Za-z0-9-]+_to_[A-Za-z0-9-]+$")


def supported_tasks() -> list[str]:
    """Every task name and alias ``pipeline()`` accepts."""
    return sorted({*TASKS, *TASK_ALIASES})


def check_task(task: str) -> Task:
    """The :class:`Task` for a name or alias, or an error listing the known ones."""
    if not isinstance(task, str):
        raise InvalidInputError(f"task must be a string, got {type(task).__name__}")
    name = TASK_ALIASES.get(task, task)
    if name not in TASKS and _TRANSLATION_PAIR.match(name):
        return TASKS["translation"]  # the pair is read by the pipeline (its task name)
    if name not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}; known tasks: {', '.join(supported_tasks())}")
    return TASKS[name]


def _infer_task(architectures: list[str], source: str) -> str:
    for arch in architectures:
        for suffix, task in _ARCH_TASKS:
            if arch.endswith(suffix):
                return task
    raise InvalidInputError(
        f"cannot tell the task of {source!r} (architectures: {architectures or 'none'}); pass the "
        f"task: pipeline(task, model=...), one of {', '.join(supported_tasks())}"
    )


def _hub_kwargs(revision: str | None, token: Any, local_files_only: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if revision is not None:
        out["revision"] = revision
    if token is not None:
        out["token"] = token
    if local_files_only:
        out["local_files_only"] = True
    return out


def _head_of(spec: Task) -> str | None:
    from .. import auto

    return None if spec.auto_class == "AutoModel" else getattr(auto, spec.auto_class).head   # None: any


def _check_loaded_head(spec: Task, model: Any) -> None:
    """A model object given for a task must have that task's head."""
    head = _head_of(spec)
    if head is None:
        return
    from .. import auto

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        wanted = auto.model_module(model_type).MODEL_CLASSES.get(head)
    except Exception:  # a model type pretrained does not know: trust the object
        return
    if wanted is None or not isinstance(model, wanted):
        raise InvalidInputError(
            f"the {spec.name} pipeline needs a model with a {head} head "
            f"({wanted.__name__ if wanted else 'none exists for ' + repr(model_type)}), got a "
            f"{type(model).__name__}; load one with {spec.auto_class}.from_pretrained(...)"
        )


def _load_model(spec: Task, name: str, *, device: Any, torch_dtype: Any, hub: dict,
                model_kwargs: dict) -> Any:
    from .. import auto
    from .base import resolve_pipeline_device

    auto_class = getattr(auto, spec.auto_class)
    kw = {**hub, **model_kwargs}
    if torch_dtype is not None:
        kw["torch_dtype"] = torch_dtype
    dev = resolve_pipeline_device(device)
    if dev.type != "cpu" and "device_map" not in kw:
        kw["device_map"] = str(dev)  # load straight onto the device
    model, info = auto_class.from_pretrained(name, output_loading_info=True, **kw)
    missing = info.get("missing_keys") or []
    if spec.auto_class != "AutoModel" and missing:
        raise InvalidInputError(
            f"{name!r} lacks the {spec.name} head: it was saved as "
            f"{getattr(model.config, 'architectures', None) or 'an unknown class'} and has no trained "
            f"weights for {missing[:6]}{' ...' if len(missing) > 6 else ''}, so the pipeline would "
            f"answer at random. Use a checkpoint fine-tuned for {spec.name}; to run random weights "
            f"anyway, load it with {spec.auto_class}.from_pretrained and pass the model object"
        )
    return model


def pipeline(
    task: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
    device: Any = None,
    torch_dtype: Any = None,
    batch_size: int | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    trust_remote_code: bool = False,
    model_kwargs: dict[str, Any] | None = None,
    device_map: Any = None,
    **kwargs: Any,
) -> "Pipeline":
    """Build the pipeline for ``task``.

    ``model``: a local folder, a hub id, a GGUF file, or a loaded model (then pass ``tokenizer``
    too, unless the model was loaded from a folder that holds one). Without ``model`` the task's default model
    is used (fetched once; only tasks with a reachable default). Without ``task`` it is read from
    the checkpoint's ``architectures``. ``device``: -1/"cpu", 0/"cuda:0", a torch.device, or None
    (the first GPU if any); or ``device_map`` ("auto", "balanced", "sequential", "cpu", "cuda:0"
    or a dict of module -> device, "disk" included; ``max_memory`` and ``offload_folder`` go in
    ``model_kwargs``: see :mod:`pretrained.placement`). ``torch_dtype``: the dtype to load (or
    cast) the model in. Other keyword arguments are the task's parameters (``top_k=3``,
    ``aggregation_strategy="simple"``) and apply to every call.

    Example::

        >>> from pretrained import pipeline                                            # doctest: +SKIP
        >>> clf = pipeline("sentiment-analysis", model="path/to/model", top_k=None)    # doctest: +SKIP
        >>> clf("what a great day")                                                     # doctest: +SKIP
        [{'label': 'POSITIVE', 'score': 0.98}, {'label': 'NEGATIVE', 'score': 0.02}]
    """
    if trust_remote_code:
        from ..errors import RemoteCodeError

        raise RemoteCodeError("trust_remote_code=True is not supported: pretrained never runs code from "
                              "a model repository")
    if device_map is not None and device is not None:
        raise InvalidInputError("pass device= or device_map=, not both")
    hub = _hub_kwargs(revision, token, local_files_only)
    if task is None and model is None:
        raise InvalidInputError("pipeline() needs a task or a model (or both); known tasks: "
                                f"{', '.join(supported_tasks())}")
    if task is None:
        if isinstance(model, (str, os.PathLike)):
            from ..config import read_config_dict

            archs = read_config_dict(model, **hub).get("architectures") or []
        else:
            archs = [type(model).__name__]
        source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
        task = _infer_task(list(archs), source)
    spec = check_task(task)
    if model is None:
        if tokenizer is not None:
            raise InvalidInputError("tokenizer= was given without model=; pass the model it belongs to")
        if spec.default_model is None:
            raise InvalidInputError(
                f"the {spec.name} task has no default model that can be reached from here; pass "
                "model= (a folder, a hub id, or a loaded model)"
            )
        from ..io.fetch import fetch

        logger.warning("no model given for %s: using the default, %s (fetched once, then cached)",
                       spec.name, spec.default_model)
        model = str(fetch(spec.default_model))
    if isinstance(model, str) and not os.path.exists(model):
        from ..io.fetch import REAL_MODELS, fetch

        if model in REAL_MODELS:   # a name of `pretrained fetch --list`: fetched once, then cached
            model = str(fetch(model, quiet=True))
    model_kwargs = dict(model_kwargs or {})
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".gguf") \
            and os.path.isfile(model):   # a GGUF file: its folder, and the file in it
        model_kwargs.setdefault("gguf_file", os.path.basename(model))
        model = os.path.dirname(os.path.abspath(model))
    if device_map is not None and isinstance(model, (str, os.PathLike)):
        if "device_map" in model_kwargs:
            raise InvalidInputError("device_map= given twice (also in model_kwargs); pass it once")
        model_kwargs["device_map"] = device_map   # placed while loading; inputs go to its main device
    elif device_map is not None:   # a loaded model: one device to move it to
        from ..modeling import resolve_device

        device = resolve_device(device_map)
    if isinstance(model, (str, os.PathLike)):
        source: Any = os.fspath(model)
        model = _load_model(spec, source, device=device, torch_dtype=torch_dtype, hub=hub,
                            model_kwargs=model_kwargs)
        if device is None and getattr(model, "hf_device_map", None):
            from ..placement import main_device

            device = main_device(model.hf_device_map)
    else:
        if model_kwargs:
            raise InvalidInputError("model_kwargs apply when the pipeline loads the model; the model "
                                    "given is already loaded")
        from ..peft.model import PeftModel

        if isinstance(model, PeftModel):  # LoRA lives inside the base model's layers: run that
            model = model.get_base_model()
        _check_loaded_head(spec, model)
        source = getattr(getattr(model, "config", None), "name_or_path", None) or None
    if tokenizer is None and not spec.tokenizer:
        pass   # the task reads no text
    elif tokenizer is None:
        if not source:
            raise InvalidInputError("the model given has no folder to load a tokenizer from; pass "
                                    "tokenizer= (a folder, a hub id, or a loaded tokenizer)")
        tokenizer = source
    if isinstance(tokenizer, (str, os.PathLike)):
        from ..tokenization import AutoTokenizer

        gguf = {"gguf_file": model_kwargs["gguf_file"]} \
            if "gguf_file" in model_kwargs and tokenizer == source else {}   # the file's own tokenizer
        tokenizer = AutoTokenizer.from_pretrained(tokenizer, **hub, **gguf)
    params = {**spec.defaults, **kwargs}
    cls = spec.pipeline_class()
    if spec.auto_class == "AutoModelForSeq2SeqLM":  # the task name may carry a language pair
        params["task"] = task
    pipe = cls(model, tokenizer, device=device, torch_dtype=torch_dtype, batch_size=batch_size, **params)
    if spec.name != cls.task:
        pipe.task = spec.name  # e.g. sentence-embeddings, run by the feature-extraction class
    return pipe
