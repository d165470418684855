"""DeBERTa-v2 and -v3 (``model_type: "deberta-v2"``): BERT-like layers with disentangled
attention.

Each attention score adds to the content term ``q_i . k_j`` a content->position term
``q_i . Kr[d(i, j)]`` (c2p) and a position->content term ``k_j . Qr[d(i, j)]`` (p2c), where
``d(i, j)`` is the relative distance ``i - j`` (log-bucketed beyond ``position_buckets / 2``
when ``position_buckets > 0``), clamped to the table of ``2 * span`` relative embeddings, and
``Kr``/``Qr`` are those embeddings projected by the layer's own key/query projections
(``share_att_key``) or by ``pos_key_proj``/``pos_query_proj``. Scores are scaled by
``1 / sqrt(head_dim * (1 + number of position terms))``. The two position terms are computed
as an additive bias and handed to SDPA with the padding mask.

As in the reference, padding tokens are masked as queries too: a padding position attends
uniformly to every position, and the embeddings of padding positions are zeroed.

Example::

    >>> import torch
    >>> from pretrained.models.deberta_v2 import DebertaV2Config, DebertaV2Model
    >>> cfg = DebertaV2Config(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                       num_attention_heads=4, intermediate_size=64, relative_attention=True,
    ...                       position_buckets=16, pos_att_type=["p2c", "c2p"])
    >>> DebertaV2Model.from_config(cfg)(torch.tensor([[1, 5, 7, 2]])).last_hidden_state.shape
    torch.Size([1, 4, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError
from ..layers import (
    activation,
    check_attention_mask,
    check_max_length,
    check_token_type_ids,
    masked_lm_output,
    merge_heads,
    sequence_classification_loss,
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
from .bert import BertIntermediate, BertSelfOutput


class DebertaV2Config(PretrainedConfig):
    model_type = "deberta-v2"

    vocab_size: int = 128100
    hidden_size: int = 1536
    num_hidden_layers: int = 24
    num_attention_heads: int = 24
    intermediate_size: int = 6144
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-7
    relative_attention: bool = False
    max_relative_positions: int = -1
    position_buckets: int = -1
    pad_token_id: int | None = 0
    position_biased_input: bool = True
    pos_att_type: str | list | None = None
    share_att_key: bool = False
    norm_rel_ebd: str = "none"
    conv_kernel_size: int = 0
    conv_groups: int = 1
    conv_act: str = "tanh"
    embedding_size: int | None = None  # None: hidden_size (filled in on load, so saved explicit)
    pooler_hidden_size: int | None = None  # None: hidden_size
    pooler_dropout: float = 0.0
    pooler_hidden_act: str = "gelu"
    cls_dropout: float | None = None
    legacy: bool = True

    def validate(self) -> None:
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        self._require(self.hidden_size % self.num_attention_heads == 0,
                      f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                      f"{self.num_attention_heads}")
        head = getattr(self, "attention_head_size", None)
        self._require(head in (None, self.hidden_size // self.num_attention_heads),
                      f"attention_head_size {head} must equal hidden_size / num_attention_heads "
                      f"= {self.hidden_size // self.num_attention_heads}")
        self._require(self.type_vocab_size >= 0,
                      f"type_vocab_size must be >= 0, got {self.type_vocab_size}")
        if isinstance(self.pos_att_type, str):  # the old "p2c|c2p" spelling
            self.pos_att_type = [x.strip() for x in self.pos_att_type.lower().split("|")]
        bad = [x for x in self.pos_att_type or [] if x not in ("c2p", "p2c")]
        self._require(not bad, f"pos_att_type {self.pos_att_type!r}: entries must be 'c2p' or "
                               f"'p2c', got {bad}")
        bad = [x for x in self.norm_rel_ebd.lower().split("|")
               if x.strip() not in ("none", "layer_norm")]
        self._require(not bad, f"norm_rel_ebd {self.norm_rel_ebd!r} must be 'none' or 'layer_norm'")
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size
        if self.pooler_hidden_size is None:
            self.pooler_hidden_size = self.hidden_size
        self._require(self.embedding_size > 0, f"embedding_size must be > 0, got {self.embedding_size}")
        self._require(self.pooler_hidden_size == self.hidden_size,
                      f"pooler_hidden_size {self.pooler_hidden_size} must equal hidden_size "
                      f"{self.hidden_size} (the classifier reads the pooler's output)")
        if self.conv_kernel_size > 0:
            self._require(self.conv_kernel_size % 2 == 1,
                          f"conv_kernel_size must be odd (same-length convolution), got "
                          f"{self.conv_kernel_size}")
            self._require(self.hidden_size % self.conv_groups == 0,
                          f"hidden_size {self.hidden_size} is not a multiple of conv_groups "
                          f"{self.conv_groups}")
            activation(self.conv_act)
        activation(self.hidden_act)
        activation(self.pooler_hidden_act)

    @property
    def relative_span(self) -> int:
        """Half the number of relative-position embeddings (the reference's ``pos_ebd_size``)."""
        if self.position_buckets > 0:
            return self.position_buckets
        if self.max_relative_positions > 0:
            return self.max_relative_positions
        return self.max_position_embeddings


def relative_positions(length: int, buckets: int, max_position: int, device) -> torch.Tensor:
    """(T, T) long: ``i - j``, log-bucketed beyond ``buckets // 2`` when ``buckets > 0``."""
    pos = torch.arange(length, device=device)
    rel = pos[:, None] - pos[None, :]
    if buckets <= 0 or max_position <= 0:
        return rel
    mid = buckets // 2
    far = rel.abs()
    far = torch.where(far < mid, torch.full_like(far, mid - 1), far)  # |d| < mid: any value <= mid
    # Same float32 steps as the reference, so ceil() lands on the same side of each boundary.
    log_pos = torch.ceil(torch.log(far / mid) / torch.log(torch.tensor((max_position - 1) / mid))
                         * (mid - 1)) + mid
    return torch.where(far <= mid, rel.float(), log_pos * torch.sign(rel)).long()


# --- blocks -----------------------------------------------------------------------------------
class DebertaV2Embeddings(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        e, h = config.embedding_size, config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position_embeddings = (nn.Embedding(config.max_position_embeddings, e)
                                    if config.position_biased_input else None)
        self.token_type_embeddings = (nn.Embedding(config.type_vocab_size, e)
                                      if config.type_vocab_size > 0 else None)
        self.embed_proj = nn.Linear(e, h, bias=False) if e != h else None
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids, mask) -> torch.Tensor:
        x = self.word_embeddings(input_ids)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(token_type_ids)
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        x = self.LayerNorm(x)
        if mask is not None:  # padding positions start from zero
            x = x * mask.unsqueeze(-1).to(x.dtype)
        return self.dropout(x)


class DisentangledSelfAttention(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.dropout_p = config.attention_probs_dropout_prob
        self.query_proj = nn.Linear(h, h)
        self.key_proj = nn.Linear(h, h)
        self.value_proj = nn.Linear(h, h)
        kinds = config.pos_att_type or []
        self.c2p = config.relative_attention and "c2p" in kinds
        self.p2c = config.relative_attention and "p2c" in kinds
        self.share_att_key = config.share_att_key
        if config.relative_attention and not config.share_att_key:
            if self.c2p:
                self.pos_key_proj = nn.Linear(h, h)
            if self.p2c:
                self.pos_query_proj = nn.Linear(h, h)
        self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
        # Scores are divided by sqrt(head_dim * (1 + c2p + p2c)), a float32 value (device="cpu":
        # models are built on the meta device).
        n_terms = 1 + ("c2p" in kinds) + ("p2c" in kinds)
        self.scale = torch.sqrt(torch.tensor(float(h // self.num_heads * n_terms), device="cpu")).item()

    def forward(self, x, mask_bias, rel_emb, c2p_index, p2c_index) -> torch.Tensor:
        q, k, v = (split_heads(m(x), self.num_heads)  # (B, nh, T, hd)
                   for m in (self.query_proj, self.key_proj, self.value_proj))
        scale = self.scale
        if q.dtype != torch.float32:  # the reference divides by the scale cast to the compute dtype
            scale = torch.tensor(scale, dtype=q.dtype, device="cpu").item()
        bias = None
        if self.c2p or self.p2c:
            rel_emb = self.pos_dropout(rel_emb).unsqueeze(0)  # (1, 2span, H)
            b, nh, t, _ = q.shape
            if self.c2p:
                proj = self.key_proj if self.share_att_key else self.pos_key_proj
                pos_k = split_heads(proj(rel_emb), nh)  # (1, nh, 2span, hd)
                c2p = torch.matmul(q, pos_k.transpose(-1, -2))  # (B, nh, T, 2span)
                bias = torch.gather(c2p, -1, c2p_index.expand(b, nh, t, t)) / scale
            if self.p2c:
                proj = self.query_proj if self.share_att_key else self.pos_query_proj
                pos_q = split_heads(proj(rel_emb), nh)
                p2c = torch.matmul(k, pos_q.transpose(-1, -2))  # (B, nh, T_key, 2span)
                p2c = torch.gather(p2c, -1, p2c_index.expand(b, nh, t, t)).transpose(-1, -2) / scale
                bias = p2c if bias is None else bias + p2c
        if mask_bias is not None:
            bias = mask_bias if bias is None else bias + mask_bias
        p = self.dropout_p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=1.0 / scale)
        return merge_heads(y)


class DebertaV2Attention(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(self, x, mask_bias, rel_emb, c2p_index, p2c_index):
        return self.output(self.self(x, mask_bias, rel_emb, c2p_index, p2c_index), x)


class DebertaV2Layer(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.attention = DebertaV2Attention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)

    def forward(self, x, mask_bias, rel_emb, c2p_index, p2c_index):
        x = self.attention(x, mask_bias, rel_emb, c2p_index, p2c_index)
        return self.output(self.intermediate(x), x)


class ConvLayer(nn.Module):
    """After the first layer: LayerNorm(layer output + act(conv(embeddings))), padding zeroed."""

    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        k, h = config.conv_kernel_size, config.hidden_size
        self.conv = nn.Conv1d(h, h, k, padding=(k - 1) // 2, groups=config.conv_groups)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.act = activation(config.conv_act)

    def forward(self, x: torch.Tensor, residual: torch.Tensor, mask: torch.Tensor | None):
        out = self.conv(x.transpose(1, 2)).transpose(1, 2)
        if mask is not None:
            out = out.masked_fill(~mask.bool().unsqueeze(-1), 0.0)
        out = self.LayerNorm(residual + self.act(self.dropout(out)))
        return out if mask is None else out * mask.unsqueeze(-1).to(out.dtype)


class DebertaV2Encoder(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(DebertaV2Layer(config) for _ in range(config.num_hidden_layers))
        if config.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * config.relative_span, config.hidden_size)
        if "layer_norm" in config.norm_rel_ebd.lower():
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.conv = ConvLayer(config) if config.conv_kernel_size > 0 else None


# --- models -----------------------------------------------------------------------------------
class DebertaV2PreTrainedModel(PreTrainedModel):
    config_class = DebertaV2Config
    base_model_prefix = "deberta"
    # v3 checkpoints carry an unused absolute position table; MLM ones an RTD head.
    ignore_unexpected = (r"position_embeddings", r"(^|\.)embeddings\.position_ids$",
                         r"^mask_predictions\.")

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv1d):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (LMPredictionHead, LegacyLMPredictionHead)):
            nn.init.zeros_(module.bias)


class DebertaV2Model(DebertaV2PreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, T, H); no pooler."""

    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__(config)
        self.embeddings = DebertaV2Embeddings(config)
        self.encoder = DebertaV2Encoder(config)

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
        cfg = self.config
        input_ids = self.check_input_ids(input_ids)
        b, t = input_ids.shape
        if cfg.position_biased_input:  # relative positions alone take any length
            check_max_length(t, cfg.max_position_embeddings)
        check_attention_mask(attention_mask, (b, t))
        if cfg.type_vocab_size > 0:  # no segment embeddings: ignored, as by the reference
            check_token_type_ids(token_type_ids, cfg.type_vocab_size, (b, t))
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.embeddings(input_ids, token_type_ids, position_ids, attention_mask)
        mask_bias = None
        if attention_mask is not None:
            # Query and key must both be real tokens. Masked scores get the lowest float (not
            # -inf), which swallows any score added to it, as the reference's masked_fill does:
            # a padding query, masked everywhere, then attends uniformly instead of giving NaN.
            m = attention_mask.bool()
            keep = m[:, None, None, :] & m[:, None, :, None]  # (B, 1, T, T)
            mask_bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
            mask_bias.masked_fill_(~keep, torch.finfo(x.dtype).min)
        rel_emb = c2p_index = p2c_index = None
        enc = self.encoder
        if cfg.relative_attention:
            rel_emb = enc.rel_embeddings.weight
            if "layer_norm" in cfg.norm_rel_ebd.lower():
                rel_emb = enc.LayerNorm(rel_emb)
            span = cfg.relative_span
            max_rel = cfg.max_relative_positions if cfg.max_relative_positions > 0 \
                else cfg.max_position_embeddings
            rel = relative_positions(t, cfg.position_buckets, max_rel, input_ids.device)
            c2p_index = torch.clamp(rel + span, 0, 2 * span - 1)  # (T_q, T_k)
            p2c_index = torch.clamp(-rel + span, 0, 2 * span - 1)  # (T_k, T_q) after transpose
        want = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        states = [x] if want else None
        embedded = x
        for i, layer in enumerate(enc.layer):
            x = layer(x, mask_bias, rel_emb, c2p_index, p2c_index)
            if i == 0 and enc.conv is not None:
                x = enc.conv(embedded, x, attention_mask)
            if states is not None:
                states.append(x)
        return BaseModelOutput(last_hidden_state=x,
                               hidden_states=tuple(states) if states is not None else None)


class LegacyPredictionHeadTransform(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class LegacyLMPredictionHead(nn.Module):
    """``cls.predictions.*`` (``legacy: true``, the usual v3 checkpoints)."""

    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.transform = LegacyPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.bias = self.decoder.bias  # one tensor: the checkpoint stores cls.predictions.bias

    def forward(self, x):
        return self.decoder(self.transform(x))


class LegacyOnlyMLMHead(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.predictions = LegacyLMPredictionHead(config)


class LMPredictionHead(nn.Module):
    """``lm_predictions.lm_head.*`` (``legacy: false``): logits against the input embeddings."""

    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.act = activation(config.hidden_act)

    def forward(self, x, word_embeddings: torch.Tensor):
        return torch.matmul(self.LayerNorm(self.act(self.dense(x))), word_embeddings.t()) + self.bias


class OnlyMLMHead(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.lm_head = LMPredictionHead(config)


class DebertaV2ForMaskedLM(DebertaV2PreTrainedModel):
    tied_weights = {"cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight"}

    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__(config)
        self.deberta = DebertaV2Model(config)
        if config.legacy:
            self.cls = LegacyOnlyMLMHead(config)
        else:
            if config.embedding_size != config.hidden_size:
                raise ConfigError("DebertaV2ForMaskedLM with legacy=false needs embedding_size == "
                                  f"hidden_size, got {config.embedding_size} and {config.hidden_size}")
            self.tied_weights = {}  # the head multiplies by the embeddings directly
            self.lm_predictions = OnlyMLMHead(config)

    def get_output_embeddings(self) -> nn.Module:
        return self.cls.predictions.decoder if self.config.legacy else self.lm_predictions.lm_head.dense

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> MaskedLMOutput:
        out = self.deberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        h = out.last_hidden_state
        if self.config.legacy:
            logits = self.cls.predictions(h)
        else:
            logits = self.lm_predictions.lm_head(h, self.deberta.embeddings.word_embeddings.weight)
        return masked_lm_output(logits, labels, out)


class ContextPooler(nn.Module):
    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.pooler_hidden_size, config.pooler_hidden_size)
        self.dropout = nn.Dropout(config.pooler_dropout)
        self.act = activation(config.pooler_hidden_act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(self.dropout(hidden[:, 0])))


def deberta_classification_loss(config: DebertaV2Config, logits: torch.Tensor,
                                labels: torch.Tensor) -> torch.Tensor:
    """With ``problem_type`` unset the reference's DeBERTa has losses of its own (and leaves
    ``problem_type`` unset): MSE for one label; cross-entropy over labels >= 0 for class ids;
    soft-label cross-entropy for a (B, num_labels) distribution. Otherwise the shared losses."""
    if config.problem_type is not None:
        return sequence_classification_loss(config, logits, labels)
    n = logits.shape[-1]
    if n == 1:
        return F.mse_loss(logits.view(-1).to(labels.dtype), labels.view(-1))
    if labels.dim() == 1 or labels.shape[-1] == 1:
        labels = labels.view(-1).long()
        picked = labels >= 0
        if not bool(picked.any()):
            return torch.zeros((), dtype=logits.dtype, device=logits.device)
        return F.cross_entropy(logits[picked].float(), labels[picked])
    return -(F.log_softmax(logits, dim=-1) * labels).sum(-1).mean()


class DebertaV2ForSequenceClassification(DebertaV2PreTrainedModel):
    """First token -> pooler (dense + gelu) -> dropout -> classifier."""

    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__(config)
        self.deberta = DebertaV2Model(config)
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        p = config.cls_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if p is None else p)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=None) -> SequenceClassifierOutput:
        out = self.deberta(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.classifier(self.dropout(self.pooler(out.last_hidden_state)))
        return sequence_classification_output(self.config, logits, labels, out,
                                              deberta_classification_loss)


class DebertaV2ForTokenClassification(TokenClassifier, DebertaV2PreTrainedModel):
    backbone_class = DebertaV2Model

    @staticmethod
    def head_dropout(config) -> float:
        return config.hidden_dropout_prob


class DebertaV2ForQuestionAnswering(SpanClassifier, DebertaV2PreTrainedModel):
    backbone_class = DebertaV2Model


MODEL_CLASSES = {
    "model": DebertaV2Model,
    "sequence-classification": DebertaV2ForSequenceClassification,
    "token-classification": DebertaV2ForTokenClassification,
    "question-answering": DebertaV2ForQuestionAnswering,
    "masked-lm": DebertaV2ForMaskedLM,
}
