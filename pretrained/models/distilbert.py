"""DistilBERT (``model_type: "distilbert"``): the 6-layer distilled BERT and its heads.

Post-norm transformer blocks like BERT's but with their own checkpoint names
(``distilbert.transformer.layer.0.attention.q_lin.weight``), no segment embeddings and no pooler;
sequence classification goes through ``pre_classifier`` + ReLU on the first token.

Example::

    >>> import torch
    >>> from pretrained.models.distilbert import DistilBertConfig, DistilBertModel
    >>> cfg = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    >>> DistilBertModel.from_config(cfg)(torch.tensor([[1, 5, 7, 2]])).last_hidden_state.shape
    torch.Size([1, 4, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import PretrainedConfig
from ..layers import (
    LayerStack,
    split_heads,
    activation,
    attention,
    attention_mask_4d,
    check_attention_mask,
    check_max_length,
    masked_lm_output,
    merge_heads,
    sequence_classification_output,
)
from ..modeling import PreTrainedModel
from .heads import SpanClassifier, TokenClassifier
from ..outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
)


class DistilBertConfig(PretrainedConfig):
    model_type = "distilbert"
    attribute_map = {"hidden_size": "dim", "num_attention_heads": "n_heads",
                     "num_hidden_layers": "n_layers"}

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    initializer_range: float = 0.02
    qa_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    pad_token_id: int | None = 0

    def validate(self) -> None:
        for key in ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim",
                    "hidden_dim"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        self._require(self.dim % self.n_heads == 0,
                      f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        activation(self.activation)


def sinusoidal_positions(n_pos: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos table of ``sinusoidal_pos_embds=True`` (used only to initialise)."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    out = torch.empty(n_pos, dim, dtype=torch.float64)
    out[:, 0::2] = torch.sin(angle[:, 0::2])
    out[:, 1::2] = torch.cos(angle[:, 1::2])
    return out.float()


# --- blocks -----------------------------------------------------------------------------------
class Embeddings(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class DistilBertSelfAttention(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        d = config.dim
        self.n_heads = config.n_heads
        self.dropout_p = config.attention_dropout
        self.q_lin = nn.Linear(d, d)
        self.k_lin = nn.Linear(d, d)
        self.v_lin = nn.Linear(d, d)
        self.out_lin = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = (split_heads(m(x), self.n_heads) for m in (self.q_lin, self.k_lin, self.v_lin))  # (B, nh, T, hd)
        p = self.dropout_p if self.training else 0.0
        return self.out_lin(merge_heads(attention(q, k, v, mask, causal=False, dropout=p)))


class FFN(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.act = activation(config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.lin2(self.act(self.lin1(x))))


class TransformerBlock(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.attention = DistilBertSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.sa_layer_norm(self.attention(x, mask) + x)
        return self.output_layer_norm(self.ffn(x) + x)


# --- models -----------------------------------------------------------------------------------
class DistilBertPreTrainedModel(PreTrainedModel):
    config_class = DistilBertConfig
    base_model_prefix = "distilbert"
    ignore_unexpected = (r"(^|\.)embeddings\.position_ids$",)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Embeddings) and self.config.sinusoidal_pos_embds:
            with torch.no_grad():
                w = module.position_embeddings.weight
                w.copy_(sinusoidal_positions(w.shape[0], w.shape[1]))


class DistilBertModel(DistilBertPreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, T, dim); no pooler."""

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = LayerStack(TransformerBlock(config) for _ in range(config.n_layers))

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
        """``token_type_ids`` is accepted and unused: DistilBERT has no segment embeddings
        (the reference ignores it too)."""
        input_ids = self.check_input_ids(input_ids)
        b, t = input_ids.shape
        check_max_length(t, self.config.max_position_embeddings)
        check_attention_mask(attention_mask, (b, t))
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.embeddings(input_ids, position_ids)
        mask = attention_mask_4d(attention_mask, causal=False, q_len=t)
        keep = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        x, states = self.transformer(x, mask, bool(keep))
        return BaseModelOutput(last_hidden_state=x, hidden_states=states)


class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    tied_weights = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)
        self.act = activation(config.activation)

    def get_output_embeddings(self) -> nn.Linear:
        return self.vocab_projector

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> MaskedLMOutput:
        out = self.distilbert(input_ids, attention_mask, None, position_ids, output_hidden_states)
        h = self.vocab_layer_norm(self.act(self.vocab_transform(out.last_hidden_state)))
        logits = self.vocab_projector(h)
        return masked_lm_output(logits, labels, out)


class DistilBertForSequenceClassification(DistilBertPreTrainedModel):
    """First token -> pre_classifier -> ReLU -> dropout -> classifier."""

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        out = self.distilbert(input_ids, attention_mask, None, position_ids, output_hidden_states)
        pooled = torch.relu(self.pre_classifier(out.last_hidden_state[:, 0]))
        logits = self.classifier(self.dropout(pooled))
        return sequence_classification_output(self.config, logits, labels, out)


class DistilBertForTokenClassification(TokenClassifier, DistilBertPreTrainedModel):
    backbone_class = DistilBertModel

    @staticmethod
    def head_dropout(config) -> float:
        return config.dropout


class DistilBertForQuestionAnswering(SpanClassifier, DistilBertPreTrainedModel):
    backbone_class = DistilBertModel

    @staticmethod
    def qa_dropout(config) -> float:
        return config.qa_dropout


MODEL_CLASSES = {
    "model": DistilBertModel,
    "sequence-classification": DistilBertForSequenceClassification,
    "token-classification": DistilBertForTokenClassification,
    "question-answering": DistilBertForQuestionAnswering,
    "masked-lm": DistilBertForMaskedLM,
}
