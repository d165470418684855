"""pretrained: pre-trained transformer models behind the familiar Auto*/pipeline API.

Importing the package is cheap: names below are resolved on first use (PEP 562), so
``import pretrained`` does not import torch-heavy modules, tokenizers or huggingface_hub.

Example::

    >>> from pretrained import AutoModel, AutoTokenizer      # doctest: +SKIP
    >>> tok = AutoTokenizer.from_pretrained("path/to/bert")  # doctest: +SKIP
    >>> model = AutoModel.from_pretrained("path/to/bert")    # doctest: +SKIP
    >>> model(**tok(["hello"], return_tensors="pt")).last_hidden_state.shape  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import *  # noqa: F401,F403  (cheap, and users catch these)

from ._version import __version__

_LAZY: dict[str, str] = {
    "AutoConfig": "auto",
    "AutoModel": "auto",
    "AutoModelForCausalLM": "auto",
    "AutoModelForMaskedLM": "auto",
    "AutoModelForSequenceClassification": "auto",
    "AutoModelForTokenClassification": "auto",
    "AutoModelForQuestionAnswering": "auto",
    "AutoModelForSeq2SeqLM": "auto",
    "AutoModelForSpeechSeq2Seq": "auto",
    "AutoModelForCTC": "auto",
    "AutoModelForAudioClassification": "auto",
    "AutoModelForImageClassification": "auto",
    "AutoModelForSemanticSegmentation": "auto",
    "AutoModelForImageSegmentation": "auto",
    "AutoModelForUniversalSegmentation": "auto",
    "AutoModelForObjectDetection": "auto",
    "AutoBackbone": "auto",
    "AutoImageProcessor": "processing",
    "load_image": "vision",
    "AutoFeatureExtractor": "processing",
    "AutoProcessor": "processing",
    "WhisperFeatureExtractor": "processing",
    "Wav2Vec2FeatureExtractor": "processing",
    "ASTFeatureExtractor": "processing",
    "load_audio": "audio",
    "AutoTokenizer": "tokenization",
    "Tokenizer": "tokenization",
    "PreTrainedTokenizerFast": "tokenization",
    "BatchEncoding": "tokenization",
    "PretrainedConfig": "config",
    "PreTrainedModel": "modeling",
    "BitsAndBytesConfig": "quantization",
    "pipeline": "pipelines",
    "GenerationConfig": "generation",
    "TextStreamer": "generation",
    "TextIteratorStreamer": "generation",
    "Trainer": "training",
    "TrainingArguments": "training",
    "Seq2SeqTrainer": "training",
    "Seq2SeqTrainingArguments": "training",
    "TrainerCallback": "training",
    "EarlyStoppingCallback": "training",
    "DataCollatorWithPadding": "training",
    "DataCollatorForLanguageModeling": "training",
    "DataCollatorForTokenClassification": "training",
    "DataCollatorForSeq2Seq": "training",
    "DataCollatorWithAudioPadding": "training",
    "DataCollatorForAudioClassification": "training",
    "DataCollatorSpeechSeq2SeqWithPadding": "training",
    "DataCollatorForImageClassification": "training",
    "DataCollatorForSemanticSegmentation": "training",
    "default_data_collator": "training",
    "EvalPrediction": "training",
    "set_seed": "training",
    "Pipeline": "pipelines.base",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover
    from .audio import load_audio
    from .auto import (AutoConfig, AutoModel, AutoModelForAudioClassification, AutoModelForCausalLM,
                       AutoModelForCTC, AutoModelForMaskedLM, AutoModelForQuestionAnswering,
                       AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoModelForSpeechSeq2Seq,
                       AutoModelForTokenClassification)
    from .config import PretrainedConfig
    from .generation import GenerationConfig, TextIteratorStreamer, TextStreamer
    from .modeling import PreTrainedModel
    from .training import (DataCollatorForLanguageModeling, DataCollatorForSeq2Seq,
                           DataCollatorForTokenClassification, DataCollatorWithPadding,
                           EarlyStoppingCallback, EvalPrediction, Seq2SeqTrainer,
                           Seq2SeqTrainingArguments, Trainer, TrainerCallback, TrainingArguments,
                           default_data_collator, set_seed)
    from .pipelines import pipeline
    from .processing import (ASTFeatureExtractor, AutoFeatureExtractor, AutoImageProcessor, AutoProcessor,
                             Wav2Vec2FeatureExtractor, WhisperFeatureExtractor)
    from .vision import load_image
    from .pipelines.base import Pipeline
    from .tokenization import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast, Tokenizer
