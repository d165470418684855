"""ELECTRA (``model_type: "electra"``): BERT's encoder behind embeddings of their own width.

When ``embedding_size != hidden_size`` the embeddings are projected up by
``electra.embeddings_project``. The transformer layers are BERT's (same math and checkpoint
names), imported from ``bert.py``. Heads: the discriminator (``ElectraForPreTraining``: is each
token replaced?), sequence classification (two-layer head with gelu on the first token), token
classification, question answering, and the generator's masked-LM head (``ElectraForMaskedLM``,
tied to the input embeddings).

Example::

    >>> import torch
    >>> from pretrained.models.electra import ElectraConfig, ElectraModel
    >>> cfg = ElectraConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
    ...                     num_attention_heads=4, intermediate_size=64)
    >>> ElectraModel.from_config(cfg)(torch.tensor([[1, 5, 7, 2]])).last_hidden_state.shape
    torch.Size([1, 4, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (
    ClassificationHead,
    LayerStack,
    activation,
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
    TokenClassifierOutput,
)
from .bert import BertConfig, BertEmbeddings, BertLayer


class ElectraConfig(BertConfig):
    model_type = "electra"

    embedding_size: int = 128
    hidden_size: int = 256
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    summary_type: str = "first"
    summary_use_proj: bool = True
    summary_activation: str = "gelu"
    summary_last_dropout: float = 0.1

    def validate(self) -> None:
        super().validate()
        self._require(not self.is_decoder and not self.add_cross_attention,
                      "is_decoder / add_cross_attention (the reference's causal-LM use of "
                      "ELECTRA) are not supported: pretrained runs it as a bidirectional encoder")
        self._require(self.embedding_size > 0,
                      f"embedding_size must be > 0, got {self.embedding_size}")


# --- blocks -----------------------------------------------------------------------------------
class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings at ``embedding_size`` width (the forward is BERT's)."""

    def __init__(self, config: ElectraConfig) -> None:
        nn.Module.__init__(self)
        e = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, e)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e)
        self.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)


class ElectraDiscriminatorPredictions(nn.Module):
    """dense -> hidden_act -> dense_prediction: one logit per token (replaced or not)."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(self.act(self.dense(x))).squeeze(-1)


class ElectraGeneratorPredictions(nn.Module):
    """dense (hidden -> embedding_size) -> gelu (exact) -> LayerNorm."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


# --- models -----------------------------------------------------------------------------------
class ElectraPreTrainedModel(PreTrainedModel):
    config_class = ElectraConfig
    base_model_prefix = "electra"
    ignore_unexpected = (r"(^|\.)embeddings\.position_ids$", r"(^|\.)embeddings\.token_type_ids$")


class ElectraModel(ElectraPreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, T, hidden_size); no pooler."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config)
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        else:
            self.embeddings_project = None
        self.encoder = LayerStack(BertLayer(config) for _ in range(config.num_hidden_layers))

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
        check_max_length(t, self.config.max_position_embeddings)
        check_attention_mask(attention_mask, (b, t))
        check_token_type_ids(token_type_ids, self.config.type_vocab_size, (b, t))
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        mask = attention_mask_4d(attention_mask, causal=False, q_len=t)
        keep = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        x, states = self.encoder(x, mask, bool(keep))
        return BaseModelOutput(last_hidden_state=x, hidden_states=states)


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator: ``logits`` (B, T), > 0 where a token looks replaced. ``labels``
    (B, T) of 0/1 give the reference's loss: binary cross-entropy over unmasked tokens."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> TokenClassifierOutput:
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.discriminator_predictions(out.last_hidden_state)
        loss = None
        if labels is not None:
            labels = labels.view(logits.shape)
            if attention_mask is not None:
                active = attention_mask.view(logits.shape) == 1
                loss = F.binary_cross_entropy_with_logits(logits[active], labels[active].float())
            else:
                loss = F.binary_cross_entropy_with_logits(logits, labels.float())
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class ElectraForMaskedLM(ElectraPreTrainedModel):
    """The generator's head: generator_predictions -> generator_lm_head (tied to the embeddings)."""

    tied_weights = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)

    def get_output_embeddings(self) -> nn.Linear:
        return self.generator_lm_head

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> MaskedLMOutput:
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.generator_lm_head(self.generator_predictions(out.last_hidden_state))
        return masked_lm_output(logits, labels, out)


class ElectraForSequenceClassification(ElectraPreTrainedModel):
    """First token -> dense -> gelu -> out_proj (``classifier.*``). Loss from ``problem_type``."""

    def __init__(self, config: ElectraConfig) -> None:
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.classifier = ClassificationHead(config.hidden_size, config.num_labels,
                                             classifier_dropout(config), "gelu")

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.classifier(out.last_hidden_state)
        return sequence_classification_output(self.config, logits, labels, out)


class ElectraForTokenClassification(TokenClassifier, ElectraPreTrainedModel):
    backbone_class = ElectraModel


class ElectraForQuestionAnswering(SpanClassifier, ElectraPreTrainedModel):
    backbone_class = ElectraModel


MODEL_CLASSES = {
    "model": ElectraModel,
    "sequence-classification": ElectraForSequenceClassification,
    "token-classification": ElectraForTokenClassification,
    "question-answering": ElectraForQuestionAnswering,
    "masked-lm": ElectraForMaskedLM,
    "pretraining": ElectraForPreTraining,  # the discriminator; no Auto class maps to it yet
}
