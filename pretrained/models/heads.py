"""Task heads the encoders share: token classification and extractive question answering.

A head class of an architecture mixes one of these in before its ``PreTrainedModel`` base and
names its backbone (``backbone_class``, built with ``backbone_kwargs`` under the attribute
``base_model_prefix``, so checkpoint keys read ``roberta.encoder...``, ``classifier.weight``)::

    class RobertaForTokenClassification(TokenClassifier, RobertaPreTrainedModel):
        backbone_class = RobertaModel
        backbone_kwargs = {"add_pooling_layer": False}

A new encoder then adds its backbone and nothing else. The backbone is called as
``backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)``.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..layers import check_span_labels, classifier_dropout, span_output, token_classification_output
from ..outputs import QuestionAnsweringOutput, TokenClassifierOutput


class _EncoderHead:
    backbone_class: ClassVar[type[nn.Module]]
    backbone_kwargs: ClassVar[dict] = {}

    def _build_backbone(self, config) -> None:
        setattr(self, self.base_model_prefix, self.backbone_class(config, **self.backbone_kwargs))

    def _backbone(self, input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states):
        return getattr(self, self.base_model_prefix)(input_ids, attention_mask, token_type_ids,
                                                     position_ids, output_hidden_states)


class TokenClassifier(_EncoderHead):
    """Backbone -> dropout -> a linear per token (``classifier``); loss over labels (-100
    ignored). ``head_dropout`` gives the dropout from the config (the reference's choice per
    architecture)."""

    @staticmethod
    def head_dropout(config) -> float:
        return classifier_dropout(config)

    def __init__(self, config) -> None:
        super().__init__(config)
        self._build_backbone(config)
        self.dropout = nn.Dropout(self.head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> TokenClassifierOutput:
        out = self._backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        return token_classification_output(logits, labels, out)


class SpanClassifier(_EncoderHead):
    """Extractive question answering: backbone -> (dropout, where ``qa_dropout`` gives one) ->
    ``qa_outputs`` (start, end logits per token); the span loss when both positions are given."""

    @staticmethod
    def qa_dropout(config) -> float | None:
        return None

    def __init__(self, config) -> None:
        super().__init__(config)
        check_span_labels(config, type(self).__name__)
        self._build_backbone(config)
        p = self.qa_dropout(config)
        if p is not None:
            self.dropout = nn.Dropout(p)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None,
                output_hidden_states=None) -> QuestionAnsweringOutput:
        out = self._backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        hidden = out.last_hidden_state
        if "dropout" in self._modules:
            hidden = self.dropout(hidden)
        return span_output(self.qa_outputs(hidden), start_positions, end_positions, out)
