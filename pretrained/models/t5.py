"""T5 (``model_type: "t5"``): v1.0 (ReLU, tied head) and v1.1 / flan-t5 (gated GELU, untied head).

An encoder-decoder of pre-norm blocks with RMS norms (no bias, no mean), unscaled attention and
no position embeddings: each stack's first layer learns a bias per head for bucketed relative
distances (:func:`relative_position_bucket`), added to every layer's attention scores. Module
names equal the checkpoint's (``encoder.block.0.layer.0.SelfAttention.q.weight``).

Example::

    >>> import torch
    >>> from pretrained.models.t5 import T5Config, T5ForConditionalGeneration
    >>> cfg = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    >>> model = T5ForConditionalGeneration.from_config(cfg)
    >>> model(torch.tensor([[5, 6, 1]]), decoder_input_ids=torch.tensor([[0, 7]])).logits.shape
    torch.Size([1, 2, 100])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError, InvalidInputError
from ..layers import (ClassificationHead, RMSNorm, activation, check_attention_mask, clamp_float16,
                      cross_key_values, decoder_inputs, encoder_cache, eos_representation,
                      seq2seq_lm_loss, sequence_classification_loss, per_input_attention,
                      shift_tokens_right, span_loss, split_heads, T5Blocks, token_loss)
from ..modeling import PreTrainedModel
from ..outputs import (BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput,
                       Seq2SeqQuestionAnsweringOutput, Seq2SeqSequenceClassifierOutput,
                       TokenClassifierOutput)

if TYPE_CHECKING:
    from ..cache import EncoderDecoderCache


class T5Config(PretrainedConfig):
    model_type = "t5"
    attribute_map = {"hidden_size": "d_model", "num_attention_heads": "num_heads",
                     "num_hidden_layers": "num_layers"}

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    is_encoder_decoder: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 0
    eos_token_id: int | list | None = 1
    decoder_start_token_id: int | None = 0
    classifier_dropout: float = 0.0

    # derived from feed_forward_proj in validate(), as the reference does (config.json values
    # of these two are overwritten, not trusted)
    dense_act_fn: str | None = None
    is_gated_act: bool | None = None
    # written by the reference 5.x, which then says tie_word_embeddings=true for every T5 (and
    # unties a head stored apart); older configs say tie_word_embeddings=false for v1.1 instead
    scale_decoder_outputs: bool | None = None

    @property
    def scales_decoder_outputs(self) -> bool:
        """v1.0 scales the decoder output by 1/sqrt(d_model) before the head; v1.1 does not."""
        if self.scale_decoder_outputs is not None:
            return self.scale_decoder_outputs
        return self.tie_word_embeddings is not False

    def validate(self) -> None:
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
                    "num_heads", "relative_attention_num_buckets", "relative_attention_max_distance"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(f"feed_forward_proj={self.feed_forward_proj!r} is not valid: use an "
                              "activation name ('relu', 'gelu') or 'gated-<activation>' "
                              "('gated-gelu' for T5 v1.1 / flan-t5)")
        self.is_gated_act = len(parts) == 2
        # v1.1's "gated-gelu" means the tanh approximation
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]
        activation(self.dense_act_fn)


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """T5's bucket of each key-minus-query distance: exact buckets for short distances, then
    logarithmically wider ones up to ``max_distance`` (farther shares the last bucket).
    Bidirectional (encoder) spends half the buckets on keys after the query; the decoder only
    looks back."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    far = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                   * (num_buckets - exact)).long()
    far = far.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < exact, distance, far)


class T5Attention(nn.Module):
    """Multi-head attention without score scaling (T5 folds it into the initialisation); the
    first layer of each stack owns ``relative_attention_bias``."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool, bidirectional: bool,
                 layer_idx: int) -> None:
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.n_heads = config.num_heads
        self.layer_idx = layer_idx
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.dropout = config.dropout_rate
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, self.n_heads)

    def position_bias(self, q_len: int, k_len: int, past: int, device: torch.device) -> torch.Tensor:
        """(1, heads, q_len, k_len): the learned bias for queries at past .. past + q_len - 1."""
        query = torch.arange(past, past + q_len, device=device)[:, None]
        key = torch.arange(k_len, device=device)[None, :]
        bucket = relative_position_bucket(key - query, self.bidirectional, self.num_buckets,
                                          self.max_distance)
        return self.relative_attention_bias(bucket).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, cache: EncoderDecoderCache | None = None,
                encoder_states: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (B or 1, heads, T, S): position bias plus the mask (large negatives)."""
        q = split_heads(self.q(x), self.n_heads)
        if encoder_states is None:
            k, v = split_heads(self.k(x), self.n_heads), split_heads(self.v(x), self.n_heads)
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)
        else:
            k, v = cross_key_values(cache, self.layer_idx, encoder_states, self._project)
        p = self.dropout if self.training else 0.0
        if q.shape[0] != k.shape[0]:   # the beams of one input over its encoder output, read once
            y = per_input_attention(q, k, v, bias.to(q.dtype), dropout=p, scale=1.0)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=p, scale=1.0)
        b, h, t, d = y.shape
        return self.o(y.transpose(1, 2).reshape(b, t, h * d))

    def _project(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_heads(self.k(states), self.n_heads), split_heads(self.v(states), self.n_heads)


class T5DenseActDense(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = activation(config.dense_act_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.dropout(self.act(self.wi(x))))


class T5DenseGatedActDense(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = activation(config.dense_act_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.dropout(self.act(self.wi_0(x)) * self.wi_1(x)))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, config: T5Config, has_bias: bool, decoder: bool, layer_idx: int) -> None:
        super().__init__()
        self.SelfAttention = T5Attention(config, has_bias, not decoder, layer_idx)
        self.layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x, bias, cache):
        return x + self.dropout(self.SelfAttention(self.layer_norm(x), bias, cache))


class T5LayerCrossAttention(nn.Module):
    def __init__(self, config: T5Config, layer_idx: int) -> None:
        super().__init__()
        self.EncDecAttention = T5Attention(config, False, True, layer_idx)
        self.layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x, bias, cache, encoder_states):
        return x + self.dropout(self.EncDecAttention(self.layer_norm(x), bias, cache, encoder_states))


class T5LayerFF(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(config) if config.is_gated_act \
            else T5DenseActDense(config)
        self.layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class T5Block(nn.Module):
    """Self-attention, (decoder only) cross-attention, feed-forward: ``layer.0/1/2``."""

    def __init__(self, config: T5Config, has_bias: bool, decoder: bool, layer_idx: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(config, has_bias, decoder, layer_idx)])
        if decoder:
            self.layer.append(T5LayerCrossAttention(config, layer_idx))
        self.layer.append(T5LayerFF(config))

    def forward(self, x, bias, cache=None, encoder_states=None, cross_bias=None):
        x = clamp_float16(self.layer[0](x, bias, cache))
        if encoder_states is not None:
            x = clamp_float16(self.layer[1](x, cross_bias, cache, encoder_states))
        return clamp_float16(self.layer[-1](x))


def _additive(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean keep-mask as scores to add: 0 where kept, the dtype's minimum where not."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(
        ~keep, torch.finfo(dtype).min)


class T5Stack(nn.Module):
    """The encoder or the decoder: embeddings (shared), blocks, final norm."""

    def __init__(self, config: T5Config, embed_tokens: nn.Embedding, decoder: bool) -> None:
        super().__init__()
        self.config = config
        self.is_decoder = decoder
        self.embed_tokens = embed_tokens
        n = config.num_decoder_layers if decoder else config.num_layers
        self.block = T5Blocks(T5Block(config, i == 0, decoder, i) for i in range(n))
        self.final_layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                cache: EncoderDecoderCache | None = None,
                output_hidden_states: bool | None = None) -> BaseModelOutput:
        b, t = input_ids.shape
        x = self.dropout(self.embed_tokens(input_ids))
        past = cache.get_seq_length() if cache is not None else 0
        k_len = past + t
        if attention_mask is not None:
            check_attention_mask(attention_mask[:, -t:], (b, t))
        keep = attention_mask[:, None, None, :k_len].bool() if attention_mask is not None \
            else torch.ones(1, 1, 1, k_len, dtype=torch.bool, device=x.device)
        if self.is_decoder:
            rows = torch.arange(past, k_len, device=x.device)[:, None]
            keep = keep & (torch.arange(k_len, device=x.device)[None, :] <= rows)
        first = self.block[0].layer[0].SelfAttention
        bias = first.position_bias(t, k_len, past, x.device).to(x.dtype) + _additive(keep, x.dtype)
        cross_bias = None
        if encoder_hidden_states is not None:
            s = encoder_hidden_states.shape[1]
            enc_keep = encoder_attention_mask[:, None, None, :].bool() if encoder_attention_mask \
                is not None else torch.ones(1, 1, 1, s, dtype=torch.bool, device=x.device)
            cross_bias = _additive(enc_keep, x.dtype)
        keep_states = output_hidden_states if output_hidden_states is not None \
            else self.config.output_hidden_states
        states = [x] if keep_states else None
        x = self.block(x, bias, cache, encoder_hidden_states, cross_bias, states)
        x = self.dropout(self.final_layer_norm(x))
        if states is not None:
            states[-1] = x  # as the reference: the last state is after the final norm
        return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(states) if states else None,
                               past_key_values=cache)


class T5PreTrainedModel(PreTrainedModel):
    config_class = T5Config
    base_model_prefix = "transformer"
    shared_weights = {"encoder.embed_tokens.weight": "shared.weight",
                      "decoder.embed_tokens.weight": "shared.weight"}
    # some old checkpoints store a relative bias for the first cross-attention, which T5 never uses
    ignore_unexpected = (r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",)
    # generate() may pass the encoder output once per input, not once per beam: the
    # cross-attention serves a row's beams from one copy (per_input_attention)
    encoder_output_per_input = True

    def _init_weights(self, module: nn.Module) -> None:
        # the reference's Mesh-TensorFlow initialisation, scaled by initializer_factor
        c, f = self.config, self.config.initializer_factor
        if isinstance(module, RMSNorm):
            nn.init.constant_(module.weight, f)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=f * (1.0 if module.embedding_dim == c.d_model
                                                    else (c.d_model * c.d_kv) ** -0.5))
        elif isinstance(module, T5Attention):
            inner = c.num_heads * c.d_kv
            nn.init.normal_(module.q.weight, std=f * (c.d_model * c.d_kv) ** -0.5)
            for lin in (module.k, module.v):
                nn.init.normal_(lin.weight, std=f * c.d_model ** -0.5)
            nn.init.normal_(module.o.weight, std=f * inner ** -0.5)
        elif isinstance(module, (T5DenseActDense, T5DenseGatedActDense)):
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(module, name):
                    nn.init.normal_(getattr(module, name).weight, std=f * c.d_model ** -0.5)
            nn.init.normal_(module.wo.weight, std=f * c.d_ff ** -0.5)
        elif isinstance(module, ClassificationHead):
            for lin in (module.dense, module.out_proj):
                nn.init.normal_(lin.weight, std=f * c.d_model ** -0.5)
                nn.init.zeros_(lin.bias)
        elif isinstance(module, nn.Linear) and module.out_features == c.vocab_size:
            nn.init.normal_(module.weight, std=f)  # the untied head (v1.1)
        elif isinstance(module, nn.Linear):  # token classifier, span head
            nn.init.normal_(module.weight, std=f * c.d_model ** -0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def get_encoder(self) -> T5Stack:
        return self.encoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return decoder_inputs(self.config, None, labels)

    def _encode(self, input_ids, attention_mask, encoder_outputs, output_hidden_states) -> BaseModelOutput:
        if encoder_outputs is None:
            input_ids = self.check_input_ids(input_ids)
            return self.encoder(input_ids, attention_mask, output_hidden_states=output_hidden_states)
        if isinstance(encoder_outputs, (tuple, list)):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        return encoder_outputs

    def _decode(self, decoder_input_ids, decoder_attention_mask, encoder: BaseModelOutput,
                attention_mask, past_key_values, use_cache, output_hidden_states) -> BaseModelOutput:
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        cache = encoder_cache(past_key_values, use_cache)
        decoder_input_ids = self.check_input_ids(decoder_input_ids)
        per_input = getattr(cache, "sequences_per_input", 1) if cache is not None else 1
        if decoder_input_ids.shape[0] != encoder.last_hidden_state.shape[0] * per_input:
            raise InvalidInputError(f"decoder_input_ids has {decoder_input_ids.shape[0]} rows but the "
                                    f"encoder output {encoder.last_hidden_state.shape[0]}")
        return self.decoder(decoder_input_ids, decoder_attention_mask, encoder.last_hidden_state,
                            attention_mask, cache, output_hidden_states)


_SEQ2SEQ_INPUTS = frozenset({"input_ids", "attention_mask", "decoder_input_ids",
                             "decoder_attention_mask", "encoder_outputs", "past_key_values",
                             "use_cache", "output_hidden_states"})


class T5Model(T5PreTrainedModel):
    """Encoder and decoder; ``last_hidden_state`` is the decoder's (B, T_dec, d_model)."""

    forward_inputs = _SEQ2SEQ_INPUTS

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, decoder=False)
        self.decoder = T5Stack(config, self.shared, decoder=True)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None,
                use_cache=None, output_hidden_states=None) -> Seq2SeqModelOutput:
        enc = self._encode(input_ids, attention_mask, encoder_outputs, output_hidden_states)
        dec = self._decode(decoder_inputs(self.config, decoder_input_ids, None),
                           decoder_attention_mask, enc, attention_mask, past_key_values, use_cache,
                           output_hidden_states)
        return Seq2SeqModelOutput(last_hidden_state=dec.last_hidden_state,
                                  past_key_values=dec.past_key_values,
                                  decoder_hidden_states=dec.hidden_states,
                                  encoder_last_hidden_state=enc.last_hidden_state,
                                  encoder_hidden_states=enc.hidden_states)


class T5ForConditionalGeneration(T5Model):
    """T5 with its language-model head: translation, summarization, any text-to-text task."""

    tied_weights = {"lm_head.weight": "shared.weight"}
    forward_inputs = _SEQ2SEQ_INPUTS | {"labels"}

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None,
                use_cache=None, labels=None, output_hidden_states=None) -> Seq2SeqLMOutput:
        enc = self._encode(input_ids, attention_mask, encoder_outputs, output_hidden_states)
        dec = self._decode(decoder_inputs(self.config, decoder_input_ids, labels),
                           decoder_attention_mask, enc, attention_mask, past_key_values, use_cache,
                           output_hidden_states)
        x = dec.last_hidden_state
        if self.config.scales_decoder_outputs:  # v1.0's head sees states times 1/sqrt(d_model)
            x = x * (self.config.d_model ** -0.5)
        logits = self.lm_head(x)
        loss = None if labels is None else seq2seq_lm_loss(logits, labels)
        return Seq2SeqLMOutput(loss=loss, logits=logits, past_key_values=dec.past_key_values,
                               decoder_hidden_states=dec.hidden_states,
                               encoder_last_hidden_state=enc.last_hidden_state,
                               encoder_hidden_states=enc.hidden_states)


class T5EncoderModel(T5PreTrainedModel):
    """The encoder alone (sentence embeddings, classifiers): ``last_hidden_state`` (B, T, d_model)."""

    shared_weights = {"encoder.embed_tokens.weight": "shared.weight"}
    ignore_unexpected = (r"^decoder\.", r"^lm_head\.")

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, decoder=False)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=None) -> BaseModelOutput:
        return self._encode(input_ids, attention_mask, None, output_hidden_states)


def _own_decoder_inputs(config: T5Config, input_ids, decoder_input_ids):
    """The classifiers' decoder reads the input itself, shifted right, unless told otherwise."""
    if decoder_input_ids is not None or input_ids is None:
        return decoder_input_ids
    return shift_tokens_right(input_ids, config.pad_token_id, config.decoder_start_token_id)


def _tail(out: Seq2SeqModelOutput) -> dict:
    return {"decoder_hidden_states": out.decoder_hidden_states,
            "encoder_last_hidden_state": out.encoder_last_hidden_state,
            "encoder_hidden_states": out.encoder_hidden_states}


class T5ForSequenceClassification(T5PreTrainedModel):
    """The decoder's state at the input's last eos token -> ``classification_head``."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "decoder_input_ids",
                                "decoder_attention_mask", "encoder_outputs", "labels",
                                "output_hidden_states"})

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.transformer = T5Model(config)
        self.shared_weights = {f"transformer.{k}": f"transformer.{v}"
                               for k, v in T5Model.shared_weights.items()}
        self.classification_head = ClassificationHead(config.d_model, config.num_labels,
                                                      config.classifier_dropout, "tanh")

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.shared

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, labels=None,
                output_hidden_states=None) -> Seq2SeqSequenceClassifierOutput:
        out = self.transformer(input_ids, attention_mask,
                               _own_decoder_inputs(self.config, input_ids, decoder_input_ids),
                               decoder_attention_mask, encoder_outputs, use_cache=False,
                               output_hidden_states=output_hidden_states)
        pooled = eos_representation(self.config.eos_token_id, input_ids, out.last_hidden_state,
                                    type(self).__name__)
        logits = self.classification_head(pooled[:, None])   # the head reads position 0
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return Seq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **_tail(out))


class T5ForTokenClassification(T5PreTrainedModel):
    """The encoder alone, a label per token (``classifier``)."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "labels", "output_hidden_states"})

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.transformer = T5EncoderModel(config)
        self.shared_weights = {"transformer.encoder.embed_tokens.weight": "transformer.shared.weight"}
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.d_model, config.num_labels)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.shared

    def forward(self, input_ids, attention_mask=None, labels=None,
                output_hidden_states=None) -> TokenClassifierOutput:
        out = self.transformer(input_ids, attention_mask, output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None if labels is None else token_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class T5ForQuestionAnswering(T5Model):
    """Span start/end logits over the decoder's positions (``qa_outputs``); the decoder reads the
    input shifted right."""

    forward_inputs = frozenset({"input_ids", "attention_mask", "decoder_input_ids",
                                "decoder_attention_mask", "encoder_outputs", "start_positions",
                                "end_positions", "output_hidden_states"})

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.qa_outputs = nn.Linear(config.d_model, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, start_positions=None,
                end_positions=None, output_hidden_states=None) -> Seq2SeqQuestionAnsweringOutput:
        out = super().forward(input_ids, attention_mask,
                              _own_decoder_inputs(self.config, input_ids, decoder_input_ids),
                              decoder_attention_mask, encoder_outputs, use_cache=False,
                              output_hidden_states=output_hidden_states)
        start, end = (x.squeeze(-1).contiguous()
                      for x in self.qa_outputs(out.last_hidden_state).split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions)
        return Seq2SeqQuestionAnsweringOutput(loss=loss, start_logits=start, end_logits=end,
                                              **_tail(out))


MODEL_CLASSES: dict[str, Any] = {
    "model": T5Model,
    "seq2seq-lm": T5ForConditionalGeneration,
    "encoder": T5EncoderModel,
    "sequence-classification": T5ForSequenceClassification,
    "token-classification": T5ForTokenClassification,
    "question-answering": T5ForQuestionAnswering,
}
