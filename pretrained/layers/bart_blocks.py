"""Blocks of the BART family of encoder-decoders (BART, Marian, mBART, Pegasus), written once.

The four architectures are one transformer that differs in a few switches, collected in
:class:`BartArch`: LayerNorm before or after each sublayer, BART's learned position table (offset
2) or the fixed sinusoidal one, a LayerNorm on the embeddings, a LayerNorm after the last layer.
Each model file declares its switches and names its classes after the reference's; the math lives
here. Module names are the checkpoints' keys (``encoder.layers.0.self_attn.k_proj.weight``).

The encoder, decoder, base model and LM head are mixins for a model file's ``PreTrainedModel``
subclass (as :mod:`pretrained.models.heads` does for the encoders' heads): they read
``self.config`` and ``self.arch`` and use ``check_input_ids``. Caching follows
:mod:`.seq2seq`: self-attention through ``cache.update``, cross-attention keys/values projected
once per generation (:func:`~.seq2seq.cross_key_values`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from ..outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from .activations import activation
from .attention import (attention, attention_mask_4d, causal_mask, check_attention_mask, merge_heads,
                        per_input_attention, split_heads)
from .decoder import prepare_decoder_inputs
from .encoder import check_max_length
from .init import init_normal_
from .seq2seq_stack import Seq2SeqDecoderLayers
from .seq2seq import as_encoder_output, clamp_float16, cross_key_values, decoder_inputs, encoder_cache, encoder_padding_mask, seq2seq_lm_loss

if TYPE_CHECKING:
    from ..cache import EncoderDecoderCache

__all__ = ["BartArch", "BartAttention", "BartEncoderLayer", "BartDecoderLayer", "LearnedPositions",
           "SinusoidalPositions", "sinusoidal_table", "Seq2SeqEncoder", "Seq2SeqDecoder",
           "Seq2SeqModel", "Seq2SeqLM", "Seq2SeqPreTrained", "check_bart_config", "shift_tokens_right_wrapped"]


@dataclass(frozen=True)
class BartArch:
    """What sets one BART-family architecture apart.

    ``normalize_before``: LayerNorm before each sublayer (mBART, Pegasus; they also clamp every
    float16 encoder output, the post-LN ones only non-finite ones, as the reference);
    ``learned_positions``: BART's trained table with its offset of 2, else the fixed sinusoidal
    table (Marian, Pegasus); ``embedding_norm``: ``layernorm_embedding`` after the embeddings;
    ``final_norm``: ``layer_norm`` after the last layer; ``key_bias``: whether ``k_proj`` has a
    bias (Whisper's has none: a key bias shifts every score of a query equally, so it changes
    nothing); ``position_offset``: the first row of the learned table (BART's 2, Whisper's 0)."""

    normalize_before: bool
    learned_positions: bool
    embedding_norm: bool
    final_norm: bool
    key_bias: bool = True
    position_offset: int = 2


def check_bart_config(config: Any) -> None:
    """The checks every BART-family config makes (sizes > 0, heads divide ``d_model``, a known
    activation), so a bad config.json fails before any module is built."""
    for key in ("vocab_size", "max_position_embeddings", "d_model", "encoder_layers", "decoder_layers",
                "encoder_ffn_dim", "decoder_ffn_dim", "encoder_attention_heads", "decoder_attention_heads"):
        config._require(getattr(config, key) > 0, f"{key} must be > 0, got {getattr(config, key)}")
    for key in ("encoder_attention_heads", "decoder_attention_heads"):
        config._require(config.d_model % getattr(config, key) == 0,
                        f"d_model {config.d_model} is not a multiple of {key} {getattr(config, key)}")
    activation(config.activation_function)


# --- positions --------------------------------------------------------------------------------
class LearnedPositions(nn.Embedding):
    """A trained position table: row ``p + offset`` for position p. BART's offset is 2 (fairseq
    kept two rows for padding), so its checkpoints' tables have ``max_position_embeddings + 2``
    rows; Whisper's decoder table starts at row 0."""

    def __init__(self, num_positions: int, dim: int, offset: int = 2) -> None:
        self.offset = offset
        super().__init__(num_positions + offset, dim)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return super().forward(position_ids + self.offset)


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed table of Marian and Pegasus (float32): sin of every even feature's angle in the
    first half, cos of every odd one's in the second (not interleaved), computed in float64 as
    the reference does with numpy."""
    pos = torch.arange(num_positions, dtype=torch.float64, device="cpu")[:, None]
    j = torch.arange(dim, dtype=torch.float64, device="cpu")
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    half = (dim + 1) // 2
    out = torch.empty(num_positions, dim, dtype=torch.float64, device="cpu")
    out[:, :half] = torch.sin(angle[:, 0::2])
    out[:, half:] = torch.cos(angle[:, 1::2])
    return out.float()


class SinusoidalPositions(nn.Module):
    """Marian/Pegasus positions. The table is a function of the shape, so it holds no
    state_dict entry (checkpoints that store it have it ignored: the values are the same); it is
    built on first use per device and dtype, so a model built on the meta device needs nothing
    loaded for it."""

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.num_positions, self.dim = num_positions, dim
        self._tables: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        key = (position_ids.device, dtype)
        table = self._tables.get(key)
        if table is None:
            table = sinusoidal_table(self.num_positions, self.dim).to(position_ids.device, dtype)
            self._tables[key] = table
        return F.embedding(position_ids, table)


def _positions(arch: BartArch, config: Any) -> nn.Module:
    if arch.learned_positions:
        return LearnedPositions(config.max_position_embeddings, config.d_model, arch.position_offset)
    return SinusoidalPositions(config.max_position_embeddings, config.d_model)


# --- attention and layers ---------------------------------------------------------------------
class BartAttention(nn.Module):
    """Multi-head attention with biases; ``forward`` is self-attention, :meth:`cross` attends
    over the encoder output. ``layer_idx`` names this layer's slots in the cache."""

    def __init__(self, dim: int, num_heads: int, dropout: float, layer_idx: int = 0,
                 key_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.dropout, self.layer_idx = num_heads, dropout, layer_idx
        self.scaling = (dim // num_heads) ** -0.5
        # declared in the reference's order, so a save lists the keys as its files do
        self.k_proj = nn.Linear(dim, dim, bias=key_bias)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, causal: bool) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.num_heads)
        p = self.dropout if self.training else 0.0
        if q.shape[0] != k.shape[0]:   # cross-attention of several rows (beams) per input: see cross()
            y = per_input_attention(q, k, v, mask, dropout=p, scale=self.scaling)
        else:
            y = attention(q, k, v, mask, causal=causal, dropout=p, scale=self.scaling)
        return self.out_proj(merge_heads(y))

    def project(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, heads, S, head_dim) of ``states``."""
        return split_heads(self.k_proj(states), self.num_heads), split_heads(self.v_proj(states), self.num_heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: Any = None,
                causal: bool = False) -> torch.Tensor:
        k, v = self.project(x)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        return self._attend(x, k, v, mask, causal)

    def cross(self, x: torch.Tensor, encoder_states: torch.Tensor, mask: torch.Tensor | None,
              cache: "EncoderDecoderCache | None") -> torch.Tensor:
        """Attention of the decoder states ``x`` over the encoder output; its keys/values come
        from ``cache`` after the first step (projected once per generation). ``x`` may hold
        several rows per encoder row (the beams of one input, in order): their queries attend to
        that input's keys together, which are projected and read once, not once per beam."""
        k, v = cross_key_values(cache, self.layer_idx, encoder_states, self.project)
        return self._attend(x, k, v, mask, False)


class _Sublayers(nn.Module):
    """Residual sublayers with the LayerNorm before (pre-LN) or after (post-LN) each."""

    def __init__(self, config: Any, normalize_before: bool, ffn_dim: int) -> None:
        super().__init__()
        self.normalize_before = normalize_before
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout
        self.activation_fn = activation(config.activation_function)
        self.fc1 = nn.Linear(config.d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)

    def _residual(self, x: torch.Tensor, norm: nn.LayerNorm, fn) -> torch.Tensor:
        h = fn(norm(x) if self.normalize_before else x)
        x = x + F.dropout(h, p=self.dropout, training=self.training)
        return x if self.normalize_before else norm(x)

    def _ffn(self, h: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.activation_fn(self.fc1(h)), p=self.activation_dropout, training=self.training)
        return self.fc2(h)


class BartEncoderLayer(_Sublayers):
    def __init__(self, config: Any, normalize_before: bool, key_bias: bool = True) -> None:
        super().__init__(config, normalize_before, config.encoder_ffn_dim)
        self.self_attn = BartAttention(config.d_model, config.encoder_attention_heads, config.attention_dropout,
                                       key_bias=key_bias)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self._residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, mask))
        x = self._residual(x, self.final_layer_norm, self._ffn)
        return clamp_float16(x, always=self.normalize_before)


class BartDecoderLayer(_Sublayers):
    def __init__(self, config: Any, normalize_before: bool, layer_idx: int, key_bias: bool = True) -> None:
        super().__init__(config, normalize_before, config.decoder_ffn_dim)
        heads, p = config.decoder_attention_heads, config.attention_dropout
        self.self_attn = BartAttention(config.d_model, heads, p, layer_idx, key_bias)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.encoder_attn = BartAttention(config.d_model, heads, p, layer_idx, key_bias)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, x, mask, encoder_states, encoder_mask, cache) -> torch.Tensor:
        x = self._residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, mask, cache, causal=True))
        if encoder_states is not None:   # a decoder-only LM (XForCausalLM) without them skips it
            x = self._residual(x, self.encoder_attn_layer_norm,
                               lambda h: self.encoder_attn.cross(h, encoder_states, encoder_mask, cache))
        return self._residual(x, self.final_layer_norm, self._ffn)


class Seq2SeqPreTrained(nn.Module):
    """Mixed into a model file's ``PreTrainedModel`` base (``class BartPreTrainedModel(
    Seq2SeqPreTrained, PreTrainedModel)``): its :class:`BartArch` and the reference's init
    (normal with ``config.init_std``; the sinusoidal table needs none)."""

    arch: ClassVar[BartArch]
    # generate() may pass the encoder output once per input, not once per beam (see cross())
    encoder_output_per_input: ClassVar[bool] = True

    def _init_weights(self, module: nn.Module) -> None:
        init_normal_(module, self.config.init_std)


def _keep_states(config: Any, output_hidden_states: bool | None) -> bool:
    return bool(output_hidden_states if output_hidden_states is not None else config.output_hidden_states)


def _check_positions(position_ids: torch.Tensor, limit: int, what: str) -> None:
    if not torch.compiler.is_compiling() and int(position_ids.max()) >= limit:
        raise InvalidInputError(f"the decoder reaches position {int(position_ids.max())} but this model has "
                                f"{limit} positions (max_position_embeddings); {what}")


# --- encoder and decoder stacks (mixins over a model file's PreTrainedModel) --------------------
class _Stack(nn.Module):
    def _embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids) * self.embed_scale
        x = x + self.embed_positions(position_ids, x.dtype).to(x.dtype)
        if self.arch.embedding_norm:
            x = self.layernorm_embedding(x)
        return F.dropout(x, p=self.config.dropout, training=self.training)

    def _build(self, config: Any, vocab_size: int, layers: list[nn.Module],
               stack: type[nn.ModuleList] = nn.ModuleList) -> None:
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(vocab_size, config.d_model, config.pad_token_id)
        self.embed_positions = _positions(self.arch, config)
        self.layers = stack(layers)   # (the decoder's: a container a backend may run at once)
        if self.arch.embedding_norm:
            self.layernorm_embedding = nn.LayerNorm(config.d_model)
        if self.arch.final_norm:
            self.layer_norm = nn.LayerNorm(config.d_model)

    def _finish(self, x: torch.Tensor, states: list | None) -> tuple[torch.Tensor, tuple | None]:
        if self.arch.final_norm:
            x = self.layer_norm(x)
            if states is not None:
                states[-1] = x   # the reference reports the last state after the final norm
        return x, tuple(states) if states is not None else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens


class Seq2SeqEncoder(_Stack):
    """The encoder: ``encoder(input_ids, attention_mask=None, output_hidden_states=None)`` ->
    :class:`BaseModelOutput` (what ``get_encoder()`` gives ``generate()``)."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "output_hidden_states"})

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        a = self.arch
        self._build(config, config.vocab_size,
                    [BartEncoderLayer(config, a.normalize_before, a.key_bias) for _ in range(config.encoder_layers)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> BaseModelOutput:
        input_ids = self.check_input_ids(input_ids)
        b, t = input_ids.shape
        check_max_length(t, self.config.max_position_embeddings)
        check_attention_mask(attention_mask, (b, t))
        x = self._embed(input_ids, torch.arange(t, device=input_ids.device)[None])
        mask = attention_mask_4d(attention_mask, causal=False, q_len=t)
        states = [x] if _keep_states(self.config, output_hidden_states) else None
        for layer in self.layers:
            x = layer(x, mask)
            if states is not None:
                states.append(x)
        x, states = self._finish(x, states)
        return BaseModelOutput(last_hidden_state=x, hidden_states=states)


class Seq2SeqDecoder(_Stack):
    """The decoder over the encoder's output, with an :class:`~pretrained.cache.EncoderDecoderCache`;
    positions continue from the cache's length. In a decoder-only LM (``is_encoder_decoder``
    false: :class:`~.seq2seq_heads.Seq2SeqCausalLM`) the encoder output is optional: without it
    the cross-attention sublayers are skipped and the cache is a plain one (DynamicCache,
    StaticCache), as the reference does."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "encoder_hidden_states",
                                "encoder_attention_mask", "past_key_values", "use_cache",
                                "output_hidden_states"})

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        a = self.arch
        self._build(config, self.decoder_vocab_size(config),
                    [BartDecoderLayer(config, a.normalize_before, i, a.key_bias)
                     for i in range(config.decoder_layers)], Seq2SeqDecoderLayers)

    @staticmethod
    def decoder_vocab_size(config: Any) -> int:
        """Marian may have a target vocabulary of its own (``share_encoder_decoder_embeddings``
        false); otherwise the decoder shares the source's."""
        if getattr(config, "share_encoder_decoder_embeddings", True):
            return config.vocab_size
        return config.decoder_vocab_size or config.vocab_size

    def check_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        vocab = self.embed_tokens.num_embeddings
        if vocab == self.config.vocab_size or not isinstance(input_ids, torch.Tensor) \
                or input_ids.is_floating_point() or input_ids.numel() == 0:
            return super().check_input_ids(input_ids)   # the shared checks and messages
        ids = input_ids if input_ids.dim() != 1 else input_ids[None]
        lo, hi = int(ids.min()), int(ids.max())
        if ids.dim() != 2 or lo < 0 or hi >= vocab:
            raise InvalidInputError(f"decoder_input_ids must be (batch, length) ids in the decoder's "
                                    f"vocabulary [0, {vocab}), got shape {tuple(ids.shape)} and ids "
                                    f"{lo}..{hi}; were they made by the target tokenizer?")
        return ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, past_key_values: Any = None,
                use_cache: bool | None = None, output_hidden_states: bool | None = None) -> BaseModelOutput:
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        crossing = encoder_hidden_states is not None or self.config.is_encoder_decoder
        if crossing:
            if encoder_hidden_states is None:
                raise InvalidInputError("the decoder needs encoder_hidden_states (the encoder's output)")
            cache = encoder_cache(past_key_values, use_cache)
        input_ids = self.check_input_ids(input_ids)
        per_input = getattr(cache, "sequences_per_input", 1) if crossing and cache is not None else 1
        if crossing and input_ids.shape[0] != encoder_hidden_states.shape[0] * per_input:
            raise InvalidInputError(f"decoder_input_ids has {input_ids.shape[0]} rows but the encoder "
                                    f"output {encoder_hidden_states.shape[0]}")
        own = (cache.self_attention_cache if cache is not None else None) if crossing else past_key_values
        # shape checks of the decoder mask (cached + new tokens) and positions, as in a decoder
        # (ids as a (B, T, 1) stand-in for embeddings: the ids are checked above, against the
        # decoder's own vocabulary); decoder-only, a new DynamicCache when use_cache
        own, past, b, t, _, position_ids = prepare_decoder_inputs(
            self, None, input_ids[..., None], attention_mask, None, own, use_cache and not crossing)
        if not crossing:
            cache = own
        _check_positions(position_ids, self.config.max_position_embeddings,
                         "decode fewer tokens (max_new_tokens)")
        x = self._embed(input_ids, position_ids)
        mask = causal_mask(attention_mask, q_len=t, past_len=past,
                           kv_len=own.kv_length(t) if own is not None else t, device=x.device)
        if encoder_attention_mask is not None and crossing:
            check_attention_mask(encoder_attention_mask, tuple(encoder_hidden_states.shape[:2]))
        cross_mask = encoder_padding_mask(encoder_attention_mask)
        states = [x] if _keep_states(self.config, output_hidden_states) else None
        x = self.layers(x, mask, encoder_hidden_states, cross_mask, cache, states)
        x, states = self._finish(x, states)
        return BaseModelOutput(last_hidden_state=x, past_key_values=cache, hidden_states=states)


# --- the base model and the LM head -----------------------------------------------------------
class Seq2SeqModel(nn.Module):
    """Encoder + decoder (``shared`` embeddings when the vocabularies are one). A model file
    sets ``encoder_class``/``decoder_class``; BART and mBART make decoder inputs from
    ``input_ids`` when none are given (:meth:`default_decoder_input_ids`), as the reference."""

    encoder_class: ClassVar[type]
    decoder_class: ClassVar[type]
    forward_inputs = frozenset({"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask",
                                "encoder_outputs", "past_key_values", "use_cache", "output_hidden_states"})

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if self.shares_embeddings(config):
            self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
            self.tied_weights = {"encoder.embed_tokens.weight": "shared.weight",
                                 "decoder.embed_tokens.weight": "shared.weight"}
        else:
            self.tied_weights = {}
        self.encoder = self.encoder_class(config)
        self.decoder = self.decoder_class(config)

    def tied_weights_under(self, prefix: str) -> dict[str, str]:
        """This model's ties as seen from a head that holds it under ``prefix``."""
        return {f"{prefix}.{k}": f"{prefix}.{v}" for k, v in self.tied_weights.items()}

    @staticmethod
    def shares_embeddings(config: Any) -> bool:
        return getattr(config, "share_encoder_decoder_embeddings", True)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared if hasattr(self, "shared") else self.encoder.embed_tokens

    def get_encoder(self) -> nn.Module:
        return self.encoder

    def get_decoder(self) -> nn.Module:
        return self.decoder

    def default_decoder_input_ids(self, input_ids: torch.Tensor | None) -> torch.Tensor | None:
        """Decoder inputs when none are given; None: the caller must give them."""
        return None

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None,
                use_cache=None, output_hidden_states=None) -> Seq2SeqModelOutput:
        """``encoder_outputs`` given: the encoder does not run (``attention_mask`` is then the
        mask of its input); ``past_key_values``: an EncoderDecoderCache from an earlier step,
        whose length is where the new decoder tokens' positions start."""
        if decoder_input_ids is None:
            decoder_input_ids = self.default_decoder_input_ids(input_ids)
        decoder_input_ids = decoder_inputs(self.config, decoder_input_ids, None)
        if encoder_outputs is None:
            if input_ids is None:
                raise InvalidInputError("pass input_ids (or encoder_outputs from model.get_encoder())")
            encoder_outputs = self.encoder(input_ids, attention_mask, output_hidden_states)
        encoder_outputs = as_encoder_output(encoder_outputs)
        out = self.decoder(decoder_input_ids, decoder_attention_mask, encoder_outputs.last_hidden_state,
                           attention_mask, past_key_values, use_cache, output_hidden_states)
        return Seq2SeqModelOutput(last_hidden_state=out.last_hidden_state, past_key_values=out.past_key_values,
                                  decoder_hidden_states=out.hidden_states,
                                  encoder_last_hidden_state=encoder_outputs.last_hidden_state,
                                  encoder_hidden_states=encoder_outputs.hidden_states)


class Seq2SeqLM(nn.Module):
    """The base model + ``lm_head`` (tied to the decoder's embeddings) + ``final_logits_bias``
    (a buffer in the checkpoints: zeros for BART, trained for Marian). ``labels`` give the loss
    and, without ``decoder_input_ids``, the decoder inputs (shifted right)."""

    model_class: ClassVar[type]
    forward_inputs = Seq2SeqModel.forward_inputs | {"labels"}

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.model = self.model_class(config)
        vocab = self.model.decoder.embed_tokens.num_embeddings
        self.register_buffer("final_logits_bias", torch.zeros(1, vocab))
        self.lm_head = nn.Linear(config.d_model, vocab, bias=False)
        if self.model_class.shares_embeddings(config):
            self.tied_weights = {"lm_head.weight": "model.shared.weight", **self.model.tied_weights_under("model")}
        else:
            self.tied_weights = {"lm_head.weight": "model.decoder.embed_tokens.weight"}

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_encoder(self) -> nn.Module:
        return self.model.encoder

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The decoder inputs for teacher forcing on ``labels`` (for collators)."""
        return decoder_inputs(self.config, None, labels)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None,
                use_cache=None, labels=None, output_hidden_states=None) -> Seq2SeqLMOutput:
        """Logits (B, T_decoder, target vocabulary); see :meth:`Seq2SeqModel.forward`."""
        if labels is not None:
            if past_key_values is None:
                use_cache = False   # as the reference: a training step keeps no cache
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                         encoder_outputs, past_key_values, use_cache, output_hidden_states)
        logits = self.lm_head(out.last_hidden_state)
        logits += self.final_logits_bias.to(logits.dtype)   # in place: no second (rows, vocabulary) tensor
        loss = None if labels is None else seq2seq_lm_loss(logits, labels)
        return Seq2SeqLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                               decoder_hidden_states=out.decoder_hidden_states,
                               encoder_last_hidden_state=out.encoder_last_hidden_state,
                               encoder_hidden_states=out.encoder_hidden_states)


def shift_tokens_right_wrapped(ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """mBART's decoder inputs: ``ids`` shifted right behind their own last non-padding token (the
    target language code ends mBART's sequences), -100 read as padding."""
    if pad_token_id is None:
        raise InvalidInputError("config.pad_token_id is not set, so labels of -100 cannot be turned "
                                "into decoder inputs; set it to the tokenizer's pad id")
    out = ids.clone().masked_fill_(ids == -100, pad_token_id)
    last = (out.ne(pad_token_id).sum(dim=1) - 1).clamp(min=0).unsqueeze(-1)
    start = out.gather(1, last).squeeze(-1)
    out[:, 1:] = out[:, :-1].clone()
    out[:, 0] = start
    return out
