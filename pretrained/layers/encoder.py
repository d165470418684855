"""Blocks shared by the encoders (DistilBERT, RoBERTa, XLM-R, ELECTRA, DeBERTa-v2).

Input checks that fail early with a clear message (:func:`check_max_length`,
:func:`check_token_type_ids`) instead of deep inside an embedding, the layer loop that also
collects hidden states (:func:`run_layers`), the first-token sentence head
(:class:`ClassificationHead`) whose parameter names match the checkpoints, and the tails of the
task-head forwards (loss + output dataclass: :func:`sequence_classification_output`,
:func:`token_classification_output`, :func:`masked_lm_output`, :func:`span_output`), so each
model's head keeps only its own modules and the backbone call.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from ..errors import ConfigError, InvalidInputError
from ..outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from .activations import activation
from .attention import split_heads
from .losses import sequence_classification_loss, span_loss, token_loss
from .packed import PackedLinear, rows_fused
from ..backends.rows import EncoderWeights, encoder_stack, few_rows


def check_max_length(length: int, limit: int) -> None:
    """Refuse inputs longer than the position table instead of failing deep in an embedding."""
    if length > limit:
        raise InvalidInputError(
            f"input has {length} tokens but this model takes at most {limit}; tokenize with "
            f"truncation=True, max_length={limit}"
        )


def qkv_heads(linears: tuple[nn.Module, nn.Module, nn.Module], x: torch.Tensor,
              num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k and v of ``x`` (B, T, H), each (B, num_heads, T, head_dim); the three projections in
    one rows-kernel call where it applies (up to 16 rows, no autograd, none wrapped by LoRA)."""
    qkv = rows_fused(linears, x)
    if qkv is None:
        return tuple(split_heads(m(x), num_heads) for m in linears)
    b, t, _ = x.shape
    return qkv.view(b, t, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


class _StackPlan:
    """What one C call over a list of post-LayerNorm layers needs, gathered once (walking ~200
    module attributes per forward costs more than the layers' own non-linear math), and what
    shows it is still true: every module and parameter on the path from the list to each weight
    (``links``: still the same objects) and each weight's address (``ptrs``: ``.to()`` moves it)."""

    __slots__ = ("links", "ptrs", "layers", "tensors", "weights")

    def __init__(self, layers: nn.ModuleList) -> None:
        self.layers = list(layers)
        self.links = [(layers._modules, k, m) for k, m in layers._modules.items()]
        self.tensors, self.ptrs, self.weights = [], [], None
        ws, bs, ns, eps, heads = [], [], [], [], set()
        for layer in self.layers:
            parts = layer.post_ln_parts() if hasattr(layer, "post_ln_parts") else None
            if parts is None:
                return
            linears, norms, num_heads = parts
            paths = {id(m): name for name, m in layer.named_modules()}
            seen = set()
            for leaf in (*linears, *norms):   # recorded first: a "no" must also notice changes
                mod = layer
                for part in paths[id(leaf)].split("."):
                    if (id(mod), part) not in seen:
                        seen.add((id(mod), part))
                        self.links.append((mod._modules, part, mod._modules[part]))
                    mod = mod._modules[part]
                for name in ("weight", "bias"):
                    self.links.append((leaf._parameters, name, leaf._parameters.get(name)))
            if any(type(m) is not PackedLinear and type(m) is not nn.Linear for m in linears) \
                    or any(type(n) is not nn.LayerNorm or len(n.normalized_shape) != 1
                           for n in norms):
                return   # LoRA-wrapped, quantized, ...: the modules run
            ws += [m.weight for m in linears]
            bs += [m.bias for m in linears]
            ns += [norms[0].weight, norms[0].bias, norms[1].weight, norms[1].bias]
            eps += [norms[0].eps, norms[1].eps]
            heads.add(num_heads)
        self.tensors = [t for t in (*ws, *bs, *ns) if t is not None]
        h, inter = ws[0].shape[1] if ws else 0, ws[4].shape[0] if ws else 0
        shapes = [(h, h)] * 4 + [(inter, h), (h, inter)]
        if not ws or len(heads) != 1 or h % min(heads) \
                or ws[0].dtype not in (torch.float32, torch.bfloat16) \
                or any(t.dtype != ws[0].dtype or not t.is_cpu or not t.is_contiguous()
                       for t in self.tensors) \
                or any(tuple(w.shape) != shapes[i % 6] for i, w in enumerate(ws)) \
                or any(b is not None and tuple(b.shape) != (shapes[i % 6][0],)
                       for i, b in enumerate(bs)) \
                or any(n is not None and tuple(n.shape) != (h,) for n in ns):
            return
        self.ptrs = [(t, t.data_ptr()) for t in self.tensors]
        self.weights = EncoderWeights(ws, bs, ns, eps, heads.pop())

    def current(self) -> bool:
        return all(d.get(k) is o for d, k, o in self.links) \
            and all(t.data_ptr() == p for t, p in self.ptrs)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def post_ln_stack(layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None,
                  first_only: bool = False) -> torch.Tensor | None:
    """Post-LayerNorm encoder layers with exact GELU (BERT's, DistilBERT's; each layer says its
    parts with ``post_ln_parts()``) in one rows-kernel call, where it applies: inference on
    float32 or bfloat16 CPU input of up to 16 rows, plain linears (not LoRA-wrapped or
    quantized) and LayerNorms. None otherwise: then run the layers. ``mask``:
    :func:`attention_mask_4d`'s key mask or None; ``first_only``: the last layer at the first
    position only (B, 1, H)."""
    if x.dtype not in (torch.float32, torch.bfloat16) or not few_rows(x):
        return None
    plan = _PLANS.get(layers)
    if plan is None or not plan.current():
        plan = _PLANS[layers] = _StackPlan(layers)
    if plan.weights is None or any(layer.training for layer in plan.layers) \
            or torch.is_grad_enabled() and any(t.requires_grad for t in plan.tensors):
        return None
    return encoder_stack(x, plan.weights, mask, first_only)


def run_layers(
    layers: nn.ModuleList,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    output_hidden_states: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """``x = layer(x, mask)`` for each layer; also the input and every layer's output when
    ``output_hidden_states`` (the reference's ``hidden_states``: embeddings first). Post-LayerNorm
    layers run in one C call where :func:`post_ln_stack` applies."""
    if not output_hidden_states:
        y = post_ln_stack(layers, x, mask)
        if y is not None:
            return y, None
    states = [x] if output_hidden_states else None
    for layer in layers:
        x = layer(x, mask)
        if states is not None:
            states.append(x)
    return x, tuple(states) if states is not None else None


class ClassificationHead(nn.Module):
    """First token -> dropout -> dense -> activation -> dropout -> out_proj: the sentence head of
    RoBERTa/XLM-R (tanh) and ELECTRA (gelu). Names are the checkpoints' (``classifier.dense``,
    ``classifier.out_proj``)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, act: str) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)
        self.act = activation(act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])
        x = self.dropout(self.act(self.dense(x)))
        return self.out_proj(x)


def check_token_type_ids(token_type_ids: torch.Tensor | None, type_vocab_size: int,
                         input_shape: tuple[int, int]) -> None:
    """Segment ids of the input's shape and within the model's ``type_vocab_size``."""
    if token_type_ids is None:
        return
    if tuple(token_type_ids.shape) != tuple(input_shape):
        raise InvalidInputError(
            f"token_type_ids has shape {tuple(token_type_ids.shape)} but the input has shape "
            f"{tuple(input_shape)}; pass the token_type_ids the tokenizer returned with these ids"
        )
    lo, hi = int(token_type_ids.min()), int(token_type_ids.max())
    if lo < 0 or hi >= type_vocab_size:
        raise InvalidInputError(
            f"token_type_ids holds segment id {lo if lo < 0 else hi}, but this model has "
            f"{type_vocab_size} segment type(s) (type_vocab_size); pass token_type_ids=None"
        )


def classifier_dropout(config) -> float:
    """The heads' dropout: ``config.classifier_dropout``, or ``hidden_dropout_prob`` when unset."""
    p = config.classifier_dropout
    return config.hidden_dropout_prob if p is None else p


def check_span_labels(config, name: str) -> None:
    """A question-answering head has exactly two outputs (start, end); refuse a config whose
    ``num_labels`` says otherwise instead of loading a mis-shaped ``qa_outputs``."""
    if config.num_labels != 2:
        raise ConfigError(f"{name} needs num_labels=2 (start, end), got "
                          f"{config.num_labels}; remove num_labels/id2label from the config")


def sequence_classification_output(config, logits: torch.Tensor, labels: torch.Tensor | None,
                                   out: BaseModelOutput,
                                   loss_fn=sequence_classification_loss) -> SequenceClassifierOutput:
    """``logits`` (B, num_labels) with ``loss_fn(config, logits, labels)`` when labels are given
    and the backbone's ``hidden_states``."""
    loss = None if labels is None else loss_fn(config, logits, labels)
    return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def token_classification_output(logits: torch.Tensor, labels: torch.Tensor | None,
                                out: BaseModelOutput) -> TokenClassifierOutput:
    """Per-token ``logits`` (B, T, num_labels) with the per-token loss (-100 ignored)."""
    loss = None if labels is None else token_loss(logits, labels)
    return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def masked_lm_output(logits: torch.Tensor, labels: torch.Tensor | None,
                     out: BaseModelOutput) -> MaskedLMOutput:
    """Vocabulary ``logits`` (B, T, V) with the per-token loss (-100 ignored)."""
    loss = None if labels is None else token_loss(logits, labels)
    return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def span_output(logits: torch.Tensor, start_positions: torch.Tensor | None,
                end_positions: torch.Tensor | None, out: BaseModelOutput) -> QuestionAnsweringOutput:
    """``qa_outputs`` logits (B, T, 2) split into contiguous start/end logits (B, T); the span
    loss only when both positions are given."""
    start, end = logits.split(1, dim=-1)
    start, end = start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()
    loss = None
    if start_positions is not None and end_positions is not None:
        loss = span_loss(start, end, start_positions, end_positions)
    return QuestionAnsweringOutput(loss=loss, start_logits=start, end_logits=end,
                                   hidden_states=out.hidden_states)
