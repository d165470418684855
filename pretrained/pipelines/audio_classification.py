"""Audio classification ("audio-classification"): labels and scores for a sound.

As the reference: ``top_k`` labels (all of them by default, at most the model's number),
best first; ``function_to_apply`` "softmax" (default), "sigmoid" (multi-label configs) or "none"
(regression).

Example::

    >>> from pretrained import pipeline                                       # doctest: +SKIP
    >>> clf = pipeline("audio-classification", model="path/to/digits-model") # doctest: +SKIP
    >>> clf("seven.wav", top_k=3)                                             # doctest: +SKIP
    [{'score': 0.97, 'label': 'seven'}, {'score': 0.01, 'label': 'one'}, ...]
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError
from .audio_base import AudioPipeline

__all__ = ["AudioClassificationPipeline"]

FUNCTIONS = ("softmax", "sigmoid", "none")


class AudioClassificationPipeline(AudioPipeline):
    """Scores the labels of an audio-classification model (Wav2Vec2, HuBERT, AST, Whisper's encoder)."""

    task = "audio-classification"
    head = "audio-classification"
    needs_tokenizer = False

    def _sanitize_parameters(self, *, top_k: int | None = None,
                             function_to_apply: str | None = None) -> tuple[dict, dict, dict]:
        post: dict[str, Any] = {}
        labels = self.model.config.num_labels
        if top_k is None:
            post["top_k"] = labels
        else:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
                raise InvalidInputError(f"top_k must be an integer >= 1, got {top_k!r}")
            post["top_k"] = min(top_k, labels)
        if function_to_apply is not None:
            if function_to_apply not in FUNCTIONS:
                raise InvalidInputError(f"function_to_apply must be one of {FUNCTIONS}, got {function_to_apply!r}")
            post["function_to_apply"] = function_to_apply
        return {}, {}, post

    def preprocess(self, item: Any) -> list[dict[str, torch.Tensor]]:
        audio = self.load(item)
        feats = self.feature_extractor(audio, sampling_rate=self.sampling_rate, return_tensors="pt")
        return [{k: torch.as_tensor(v) for k, v in dict(feats).items()
                 if k in self.model_input_names and v is not None}]

    def _forward(self, batch: dict[str, torch.Tensor], **fwd: Any) -> dict[str, torch.Tensor]:
        dtype = next(self.model.parameters()).dtype
        inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in batch.items()}
        return {"logits": self.model(**inputs).logits}

    def postprocess(self, output: dict, top_k: int = 5, function_to_apply: str | None = None) -> list[dict]:
        config = self.model.config
        if function_to_apply is None:
            problem = getattr(config, "problem_type", None)
            function_to_apply = {"regression": "none", "multi_label_classification": "sigmoid"}.get(problem, "softmax")
        logits = output["logits"][0].float()
        probs = logits.softmax(-1) if function_to_apply == "softmax" else \
            logits.sigmoid() if function_to_apply == "sigmoid" else logits
        scores, ids = probs.topk(top_k)
        return [{"score": s, "label": config.id2label[i]} for s, i in zip(scores.tolist(), ids.tolist())]
