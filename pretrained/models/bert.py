"""BERT (``model_type: "bert"``): the encoder and its four task heads plus the masked-LM head.

Module names equal the checkpoint's keys (``bert.encoder.layer.0.attention.self.query.weight``),
so loading is a straight copy and ``save_pretrained`` writes files the reference reads.

Example::

    >>> import torch
    >>> from pretrained.models.bert import BertConfig, BertModel
    >>> cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                  num_attention_heads=4, intermediate_size=64)
    >>> BertModel(cfg)(torch.tensor([[1, 5, 7, 2]])).last_hidden_state.shape
    torch.Size([1, 4, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError, InvalidInputError
from ..layers import (
    LayerStack,
    activation,
    attention,
    attention_mask_4d,
    check_attention_mask,
    classifier_dropout,
    masked_lm_output,
    merge_heads,
    sequence_classification_output,
    split_heads,
)
from ..modeling import PreTrainedModel
from .heads import SpanClassifier, TokenClassifier
from ..outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
)


class BertConfig(PretrainedConfig):
    model_type = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    classifier_dropout: float | None = None

    def validate(self) -> None:
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        self._require(
            self.hidden_size % self.num_attention_heads == 0,
            f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
            f"{self.num_attention_heads}",
        )
        if self.position_embedding_type != "absolute":
            raise ConfigError(
                f"BertConfig.position_embedding_type {self.position_embedding_type!r} is not "
                "supported; only 'absolute' is"
            )
        activation(self.hidden_act)


# --- blocks -----------------------------------------------------------------------------------
class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids) -> torch.Tensor:
        # Same summation order as the reference, so bfloat16 rounds the same way.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.dropout_p = config.attention_probs_dropout_prob
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                first_only: bool = False) -> torch.Tensor:
        q = split_heads(self.query(x), self.num_heads)  # (B, nh, T, hd)
        k = split_heads(self.key(x), self.num_heads)
        v = split_heads(self.value(x), self.num_heads)
        if first_only:  # only the first position queries; every position is still a key
            q = q[:, :, :1]
        p = self.dropout_p if self.training else 0.0
        return merge_heads(attention(q, k, v, mask, causal=False, dropout=p))


class BertSelfOutput(nn.Module):
    """Projection + dropout + residual LayerNorm; used after attention and after the MLP."""

    def __init__(self, config: BertConfig, n_in: int) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(self, x, mask, first_only: bool = False):
        return self.output(self.self(x, mask, first_only), x[:, :1] if first_only else x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)

    def forward(self, x, mask, first_only: bool = False):
        """``first_only``: the output at the first position only, (B, 1, H) (what a pooler reads);
        its attention still reads every position."""
        x = self.attention(x, mask, first_only)
        return self.output(self.intermediate(x), x)


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


# --- models -----------------------------------------------------------------------------------
class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    # Buffers older checkpoints carry that we compute on the fly instead.
    ignore_unexpected = (r"(^|\.)embeddings\.position_ids$", r"(^|\.)embeddings\.token_type_ids$")


class BertModel(BertPreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, T, H) and ``pooler_output`` (B, H)."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
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
        *,
        first_token_only: bool = False,
    ) -> BaseModelOutput:
        """``first_token_only``: run the last layer at the first position only (all the pooler
        reads), so ``last_hidden_state`` has length 1; ignored when hidden states are returned."""
        input_ids = self.check_input_ids(input_ids)
        b, t = input_ids.shape
        if t > self.config.max_position_embeddings:
            raise InvalidInputError(
                f"input has {t} tokens but this model takes at most "
                f"{self.config.max_position_embeddings}; tokenize with truncation=True, "
                f"max_length={self.config.max_position_embeddings}"
            )
        check_attention_mask(attention_mask, (b, t))
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = attention_mask_4d(attention_mask, causal=False, q_len=t)
        keep = output_hidden_states if output_hidden_states is not None \
            else self.config.output_hidden_states
        x, states = self.encoder(x, mask, bool(keep), first_only=first_token_only and not keep)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BaseModelOutput(last_hidden_state=x, pooler_output=pooled,
                               hidden_states=states)


class BertForSequenceClassification(BertPreTrainedModel):
    """Pooled [CLS] -> dropout -> linear. Loss from ``config.problem_type``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        # In eval the last layer runs for [CLS] only (the rest is unused); training keeps the
        # reference's full pass so dropout draws the same random numbers.
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                        first_token_only=not self.training)
        logits = self.classifier(self.dropout(out.pooler_output))
        return sequence_classification_output(self.config, logits, labels, out)


class BertForTokenClassification(TokenClassifier, BertPreTrainedModel):
    backbone_class = BertModel
    backbone_kwargs = {"add_pooling_layer": False}


class BertForQuestionAnswering(SpanClassifier, BertPreTrainedModel):
    backbone_class = BertModel
    backbone_kwargs = {"add_pooling_layer": False}


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = self.decoder.bias  # the checkpoint stores it as cls.predictions.bias

    def forward(self, x):
        return self.decoder(self.transform(x))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class BertForMaskedLM(BertPreTrainedModel):
    tied_weights = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    }
    # decoder.bias and predictions.bias are one tensor; the checkpoint may hold either name.
    aliases = {"cls.predictions.decoder.bias": "cls.predictions.bias"}

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> MaskedLMOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.cls.predictions(out.last_hidden_state)
        return masked_lm_output(logits, labels, out)


MODEL_CLASSES = {
    "model": BertModel,
    "sequence-classification": BertForSequenceClassification,
    "token-classification": BertForTokenClassification,
    "question-answering": BertForQuestionAnswering,
    "masked-lm": BertForMaskedLM,
}
