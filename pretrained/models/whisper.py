"""Whisper (``model_type: "whisper"``): speech recognition and translation (OpenAI's tiny ... large).

A pre-LayerNorm encoder-decoder. The encoder reads a log-mel spectrogram (B, num_mel_bins, 3000:
30 s at 100 frames/s) through two convolutions (the second halves time to 1500 frames), adds a
fixed sinusoidal table stored in the checkpoint, and runs the BART family's pre-LN layers; the
decoder is mBART's (learned positions from row 0, a final LayerNorm) with no bias on ``k_proj``.
The blocks are :mod:`pretrained.layers.bart_blocks`; the generation rules (language and task
tokens, timestamps, suppressed tokens) live in :mod:`pretrained.generation.whisper`.

Example::

    >>> import torch
    >>> from pretrained.models.whisper import WhisperConfig, WhisperForConditionalGeneration
    >>> cfg = WhisperConfig(vocab_size=100, num_mel_bins=8, d_model=32, encoder_layers=2,
    ...                     decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
    ...                     encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=16,
    ...                     max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=1,
    ...                     decoder_start_token_id=2, begin_suppress_tokens=None)
    >>> model = WhisperForConditionalGeneration.from_config(cfg).eval()
    >>> features = torch.randn(1, 8, 32)            # (batch, mel bins, 2 * max_source_positions)
    >>> model(features, decoder_input_ids=torch.tensor([[2, 5]])).logits.shape
    torch.Size([1, 2, 100])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..errors import InvalidInputError
from ..layers import BartArch, BartEncoderLayer, Seq2SeqDecoder, Seq2SeqPreTrained, as_encoder_output, \
    check_bart_config, decoder_inputs, init_normal_, seq2seq_lm_loss
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput, SequenceClassifierOutput


class WhisperConfig(PretrainedConfig):
    model_type = "whisper"
    attribute_map = {"num_key_value_heads": "encoder_attention_heads",
                     "num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "num_hidden_layers": "encoder_layers"}

    vocab_size: int = 51865
    num_mel_bins: int = 80
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    decoder_layers: int = 4
    decoder_attention_heads: int = 6
    decoder_ffn_dim: int = 1536
    encoder_ffn_dim: int = 1536
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    decoder_start_token_id: int | None = 50257
    use_cache: bool = True
    is_encoder_decoder: bool = True
    activation_function: str = "gelu"
    d_model: int = 384
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    scale_embedding: bool = False
    max_source_positions: int = 1500
    max_target_positions: int = 448
    pad_token_id: int | None = 50256
    bos_token_id: int | None = 50256
    eos_token_id: int | list | None = 50256
    suppress_tokens: list | None = None
    begin_suppress_tokens: list | None = [220, 50256]
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    apply_spec_augment: bool = False
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    median_filter_width: int = 7
    tie_word_embeddings: bool = True

    @property
    def max_position_embeddings(self) -> int:
        """The decoder's positions (the shared decoder blocks read this name)."""
        return self.max_target_positions

    def validate(self) -> None:
        for key in ("num_mel_bins", "max_source_positions", "max_target_positions", "classifier_proj_size"):
            self._require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}")
        self._require(self.d_model % 2 == 0, f"d_model must be even (the sinusoidal table), got {self.d_model}")
        check_bart_config(self)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's encoder position table (stored in checkpoints; made here for new models): the
    sines of all frequencies, then their cosines, frequencies geometric from 1 to 1/max_timescale."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


class WhisperPreTrainedModel(Seq2SeqPreTrained, PreTrainedModel):
    config_class = WhisperConfig
    base_model_prefix = "model"
    main_input_name = "input_features"
    arch = BartArch(normalize_before=True, learned_positions=True, embedding_norm=False, final_norm=True,
                    key_bias=False, position_offset=0)

    def _init_weights(self, module: nn.Module) -> None:
        init_normal_(module, self.config.init_std)
        if isinstance(module, nn.Conv1d):
            nn.init.normal_(module.weight, std=self.config.init_std)
            nn.init.zeros_(module.bias)
        if isinstance(module, WhisperEncoder):
            with torch.no_grad():
                module.embed_positions.weight.copy_(sinusoids(*module.embed_positions.weight.shape))
        if isinstance(module, WhisperForAudioClassification) and self.config.use_weighted_layer_sum:
            with torch.no_grad():
                module.layer_weights.fill_(1.0 / (self.config.encoder_layers + 1))


class WhisperEncoder(WhisperPreTrainedModel):
    """Mel features (B, num_mel_bins, 2 * max_source_positions) -> states (B, max_source_positions,
    d_model). Every input is the full 30-s window (shorter audio is padded with silence by the
    feature extractor); the model attends over all of it, so ``attention_mask`` is accepted for
    the familiar call signature and, as in the reference, not applied."""

    forward_inputs = frozenset({"input_features", "attention_mask", "output_hidden_states"})

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, d)
        self.embed_positions.requires_grad_(False)   # a fixed table, as the reference trains it
        self.layers = nn.ModuleList(BartEncoderLayer(config, True, key_bias=False)
                                    for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)

    def get_input_embeddings(self) -> nn.Module:
        return self.conv1

    def check_features(self, input_features: Any) -> torch.Tensor:
        frames = 2 * self.config.max_source_positions
        if not isinstance(input_features, torch.Tensor) or not input_features.is_floating_point():
            raise InvalidInputError(f"input_features must be a float tensor of log-mel features, got "
                                    f"{type(input_features).__name__}; make them with "
                                    "WhisperFeatureExtractor(audio, return_tensors='pt')")
        if input_features.dim() == 2:
            input_features = input_features[None]
        if input_features.dim() != 3 or input_features.shape[1] != self.config.num_mel_bins \
                or input_features.shape[2] != frames:
            raise InvalidInputError(f"Whisper takes input_features of shape (batch, "
                                    f"{self.config.num_mel_bins}, {frames}) (mel bins, 30 s of frames), "
                                    f"got {tuple(input_features.shape)}; the feature extractor pads "
                                    "shorter audio to 30 s: call it with its default padding")
        return input_features

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None) -> BaseModelOutput:
        x = self.check_features(input_features)
        x = F.gelu(self.conv1(x.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.embed_positions.weight.to(x.dtype)
        x = F.dropout(x, p=self.config.dropout, training=self.training)
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        states = [x] if keep else None
        for layer in self.layers:
            if self.training and self.config.encoder_layerdrop > 0 and float(torch.rand([])) < self.config.encoder_layerdrop:
                continue
            x = layer(x, None)
            if states is not None:
                states.append(x)
        x = self.layer_norm(x)
        if states is not None:
            states[-1] = x   # the reference reports the last state after the final norm
        return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(states) if states is not None else None)


class WhisperDecoder(Seq2SeqDecoder, WhisperPreTrainedModel):
    """The text decoder over the encoder's states, with an EncoderDecoderCache."""


class WhisperModel(WhisperPreTrainedModel):
    """The bare encoder-decoder: ``last_hidden_state`` (B, T_decoder, d_model)."""

    forward_inputs = frozenset({"input_features", "attention_mask", "decoder_input_ids",
                                "decoder_attention_mask", "encoder_outputs", "past_key_values",
                                "use_cache", "output_hidden_states"})

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def get_encoder(self) -> nn.Module:
        return self.encoder

    def get_decoder(self) -> nn.Module:
        return self.decoder

    def freeze_encoder(self) -> None:
        """Stop training the encoder (fine-tuning the decoder alone, as the reference's)."""
        self.encoder.requires_grad_(False)

    def forward(self, input_features=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None,
                use_cache=None, output_hidden_states=None) -> Seq2SeqModelOutput:
        """``encoder_outputs`` given: the encoder does not run; ``past_key_values``: an
        EncoderDecoderCache from an earlier step (new positions continue from its length)."""
        decoder_input_ids = decoder_inputs(self.config, decoder_input_ids, None)
        if encoder_outputs is None:
            if input_features is None:
                raise InvalidInputError("pass input_features (or encoder_outputs from model.get_encoder())")
            encoder_outputs = self.encoder(input_features, attention_mask, output_hidden_states)
        encoder_outputs = as_encoder_output(encoder_outputs)
        out = self.decoder(decoder_input_ids, decoder_attention_mask, encoder_outputs.last_hidden_state,
                           None, past_key_values, use_cache, output_hidden_states)
        return Seq2SeqModelOutput(last_hidden_state=out.last_hidden_state, past_key_values=out.past_key_values,
                                  decoder_hidden_states=out.hidden_states,
                                  encoder_last_hidden_state=encoder_outputs.last_hidden_state,
                                  encoder_hidden_states=encoder_outputs.hidden_states)


class WhisperForConditionalGeneration(WhisperPreTrainedModel):
    """WhisperModel + ``proj_out`` (tied to the decoder's embeddings): transcription and
    translation with ``model.generate(input_features)``."""

    forward_inputs = WhisperModel.forward_inputs | {"labels"}
    generate_with = "whisper"   # generate() applies Whisper's rules (pretrained.generation.whisper)

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.model = WhisperModel(config)
        self.proj_out = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.tied_weights = {"proj_out.weight": "model.decoder.embed_tokens.weight"}

    def get_output_embeddings(self) -> nn.Linear:
        return self.proj_out

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def get_encoder(self) -> nn.Module:
        return self.model.encoder

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def freeze_encoder(self) -> None:
        self.model.freeze_encoder()

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return decoder_inputs(self.config, None, labels)

    def forward(self, input_features=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, past_key_values=None,
                use_cache=None, labels=None, output_hidden_states=None) -> Seq2SeqLMOutput:
        """Logits (B, T_decoder, vocab_size); ``labels`` (-100 ignored) give the loss and, without
        ``decoder_input_ids``, the decoder inputs (shifted right behind decoder_start_token_id)."""
        if labels is not None:
            if labels.shape[-1] > self.config.max_target_positions:
                raise InvalidInputError(f"labels have {labels.shape[-1]} tokens but Whisper's decoder has "
                                        f"{self.config.max_target_positions} positions; truncate the "
                                        "transcripts (tokenizer(..., truncation=True, max_length=...))")
            if past_key_values is None:
                use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.model(input_features, attention_mask, decoder_input_ids, decoder_attention_mask,
                         encoder_outputs, past_key_values, use_cache, output_hidden_states)
        logits = self.proj_out(out.last_hidden_state)
        loss = None if labels is None else seq2seq_lm_loss(logits, labels)
        return Seq2SeqLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                               decoder_hidden_states=out.decoder_hidden_states,
                               encoder_last_hidden_state=out.encoder_last_hidden_state,
                               encoder_hidden_states=out.encoder_hidden_states)


class WhisperForAudioClassification(WhisperPreTrainedModel):
    """Whisper's encoder + ``projector`` + mean over time + ``classifier`` (language
    identification, keyword spotting); ``use_weighted_layer_sum`` mixes every layer's states
    with learned softmax weights."""

    forward_inputs = frozenset({"input_features", "attention_mask", "encoder_outputs", "labels",
                                "output_hidden_states"})

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        if config.use_weighted_layer_sum:
            layers = config.encoder_layers + 1   # the layers' outputs + the input embeddings
            self.layer_weights = nn.Parameter(torch.ones(layers) / layers)
        self.projector = nn.Linear(config.d_model, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def get_encoder(self) -> nn.Module:
        return self.encoder

    def freeze_encoder(self) -> None:
        self.encoder.requires_grad_(False)

    def forward(self, input_features=None, attention_mask=None, encoder_outputs=None, labels=None,
                output_hidden_states=None) -> SequenceClassifierOutput:
        weighted = self.config.use_weighted_layer_sum
        if encoder_outputs is None:
            if input_features is None:
                raise InvalidInputError("pass input_features (the feature extractor's output)")
            encoder_outputs = self.encoder(input_features, attention_mask, True if weighted else output_hidden_states)
        encoder_outputs = as_encoder_output(encoder_outputs)
        if weighted:
            if encoder_outputs.hidden_states is None:
                raise InvalidInputError("use_weighted_layer_sum needs every layer's states: pass "
                                        "encoder_outputs computed with output_hidden_states=True")
            stacked = torch.stack(encoder_outputs.hidden_states, dim=1)
            weights = F.softmax(self.layer_weights, dim=-1).view(-1, 1, 1)
            x = (stacked * weights).sum(dim=1)
        else:
            x = encoder_outputs.last_hidden_state
        logits = self.classifier(self.projector(x).mean(dim=1))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.num_labels), labels.to(logits.device).view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=encoder_outputs.hidden_states)


MODEL_CLASSES = {
    "model": WhisperModel,
    "speech-seq2seq": WhisperForConditionalGeneration,
    "audio-classification": WhisperForAudioClassification,
}
