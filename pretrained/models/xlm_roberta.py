"""XLM-RoBERTa (``model_type: "xlm-roberta"``): RoBERTa's architecture with a multilingual
vocabulary. The classes are RoBERTa's under XLM-R's names and config type, so checkpoints
and ``save_pretrained`` files match the reference's.

Example::

    >>> import torch
    >>> from pretrained.models.xlm_roberta import XLMRobertaConfig, XLMRobertaModel
    >>> cfg = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)
    >>> XLMRobertaModel.from_config(cfg)(torch.tensor([[0, 5, 7, 2]])).last_hidden_state.shape
    torch.Size([1, 4, 32])
"""

from __future__ import annotations

from .roberta import (
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)


class XLMRobertaConfig(RobertaConfig):
    model_type = "xlm-roberta"

    vocab_size: int = 30522  # the reference's default; real checkpoints say 250002


class XLMRobertaModel(RobertaModel):
    config_class = XLMRobertaConfig


class XLMRobertaForMaskedLM(RobertaForMaskedLM):
    config_class = XLMRobertaConfig


class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    config_class = XLMRobertaConfig


class XLMRobertaForTokenClassification(RobertaForTokenClassification):
    config_class = XLMRobertaConfig


class XLMRobertaForQuestionAnswering(RobertaForQuestionAnswering):
    config_class = XLMRobertaConfig


MODEL_CLASSES = {
    "model": XLMRobertaModel,
    "sequence-classification": XLMRobertaForSequenceClassification,
    "token-classification": XLMRobertaForTokenClassification,
    "question-answering": XLMRobertaForQuestionAnswering,
    "masked-lm": XLMRobertaForMaskedLM,
}
