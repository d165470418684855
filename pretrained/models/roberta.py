"""RoBERTa (``model_type: "roberta"``): BERT's encoder with learned positions counted from
``pad_token_id + 1`` and a two-layer sentence head on ``<s>``.

The transformer layers are BERT's (same math, same checkpoint names), imported from
``bert.py``. Position ids come from the input ids, as the reference computes them: real tokens
get ``pad + 1, pad + 2, ...`` and padding tokens get ``pad``, so a right- or left-padded
sequence sees the same positions as alone.

Example::

    >>> import torch
    >>> from pretrained.models.roberta import RobertaConfig, RobertaModel
    >>> cfg = RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)
    >>> RobertaModel.from_config(cfg)(torch.tensor([[0, 5, 7, 2]])).last_hidden_state.shape
    torch.Size([1, 4, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (
    ClassificationHead,
    LayerStack,
    attention_mask_4d,
    check_attention_mask,
    check_max_length,
    check_token_type_ids,
    classifier_dropout,
    masked_lm_output,
    sequence_classification_output,
)
from ..modeling import PreTrainedModel
from .heads import SpanClassifier, TokenClassifier
from ..outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
)
from .bert import BertConfig, BertEmbeddings, BertLayer, BertPooler


class RobertaConfig(BertConfig):
    model_type = "roberta"

    vocab_size: int = 50265
    pad_token_id: int | None = 1
    bos_token_id: int | list | None = 0
    eos_token_id: int | list | None = 2

    def validate(self) -> None:
        super().validate()
        self._require(not self.is_decoder and not self.add_cross_attention,
                      "is_decoder / add_cross_attention (the reference's causal-LM use of "
                      "RoBERTa) are not supported: pretrained runs it as a bidirectional encoder")
        self._require(self.pad_token_id is not None and 0 <= self.pad_token_id < self.vocab_size,
                      f"pad_token_id must be a token id in [0, {self.vocab_size}) (positions are "
                      f"counted from it), got {self.pad_token_id}")
        self._require(self.max_position_embeddings > self.pad_token_id + 1,
                      f"max_position_embeddings {self.max_position_embeddings} leaves no room for "
                      f"positions, which start at pad_token_id + 1 = {self.pad_token_id + 1}")


def position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """Real tokens -> padding_idx + 1, + 2, ... (counting real tokens only); padding -> padding_idx."""
    real = input_ids.ne(padding_idx).int()
    return (torch.cumsum(real, dim=1).type_as(real) * real).long() + padding_idx


# --- blocks -----------------------------------------------------------------------------------
class RobertaEmbeddings(BertEmbeddings):
    """BERT's embeddings; the position table's padding row is ``pad_token_id`` (kept at zero
    by initialisation, as the reference does)."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.position_embeddings.padding_idx = config.pad_token_id


class RobertaLMHead(nn.Module):
    """dense -> gelu (exact, whatever ``hidden_act``) -> layer_norm -> decoder (+ bias)."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = self.decoder.bias  # one tensor: the checkpoint stores it as lm_head.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(x))))


# --- models -----------------------------------------------------------------------------------
class RobertaPreTrainedModel(PreTrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"
    ignore_unexpected = (r"(^|\.)embeddings\.position_ids$", r"(^|\.)embeddings\.token_type_ids$")

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RobertaLMHead):
            nn.init.zeros_(module.bias)


class RobertaModel(RobertaPreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, T, H) and ``pooler_output`` (B, H)."""

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = RobertaEmbeddings(config)
        self.encoder = LayerStack(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> BaseModelOutput:
        input_ids = self.check_input_ids(input_ids)
        b, t = input_ids.shape
        pad = self.config.pad_token_id
        if position_ids is None:
            check_max_length(t, self.config.max_position_embeddings - pad - 1)
            position_ids = position_ids_from_input_ids(input_ids, pad)
        else:
            check_max_length(t, self.config.max_position_embeddings)
        check_attention_mask(attention_mask, (b, t))
        check_token_type_ids(token_type_ids, self.config.type_vocab_size, (b, t))
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = attention_mask_4d(attention_mask, causal=False, q_len=t)
        keep = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        x, states = self.encoder(x, mask, bool(keep))
        pooled = self.pooler(x) if self.pooler is not None else None
        return BaseModelOutput(last_hidden_state=x, pooler_output=pooled, hidden_states=states)


class RobertaForMaskedLM(RobertaPreTrainedModel):
    tied_weights = {"lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight"}

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> MaskedLMOutput:
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.lm_head(out.last_hidden_state)
        return masked_lm_output(logits, labels, out)


class RobertaForSequenceClassification(RobertaPreTrainedModel):
    """``<s>`` -> dense -> tanh -> out_proj (``classifier.*``). Loss from ``problem_type``."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.classifier = ClassificationHead(config.hidden_size, config.num_labels,
                                             classifier_dropout(config), "tanh")

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.classifier(out.last_hidden_state)
        return sequence_classification_output(self.config, logits, labels, out)


class RobertaForTokenClassification(TokenClassifier, RobertaPreTrainedModel):
    backbone_class = RobertaModel
    backbone_kwargs = {"add_pooling_layer": False}


class RobertaForQuestionAnswering(SpanClassifier, RobertaPreTrainedModel):
    backbone_class = RobertaModel
    backbone_kwargs = {"add_pooling_layer": False}


MODEL_CLASSES = {
    "model": RobertaModel,
    "sequence-classification": RobertaForSequenceClassification,
    "token-classification": RobertaForTokenClassification,
    "question-answering": RobertaForQuestionAnswering,
    "masked-lm": RobertaForMaskedLM,
}
