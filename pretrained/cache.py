"""Key/value caches for decoding: what attention has seen, kept so each step only computes
the new tokens.

A model's attention layer calls ``cache.update(layer_idx, k, v)`` with the new keys/values
(B, kv_heads, T_new, head_dim) and attends over what it returns. Two kinds:

* :class:`DynamicCache` grows as needed. Storage grows geometrically and ``update`` returns
  views, so a decode step writes one slot instead of re-concatenating the whole history.
* :class:`StaticCache` is allocated once at ``max_length`` and written in place; ``update``
  always returns the full buffers (fixed shapes, for ``torch.compile``), and the model masks
  the slots not written yet (``kv_length`` tells it how long the keys are).

Example::

    >>> import torch
    >>> from pretrained.cache import DynamicCache
    >>> cache = DynamicCache()
    >>> k, v = cache.update(0, torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 5, 4))
    >>> k, v = cache.update(0, torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    >>> k.shape, cache.get_seq_length()
    (torch.Size([1, 2, 6, 4]), 6)
"""

from __future__ import annotations

import torch

from .errors import InvalidInputError

__all__ = ["Cache", "DynamicCache", "StaticCache", "EncoderDecoderCache"]


class Cache:
    """Interface shared by the caches. Layers are indexed 0..n-1 in the order they run."""

    def __init__(self) -> None:
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._lengths: list[int] = []

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, kv_heads, T_new, head_dim) for ``layer_idx``; return every key and
        value that layer's attention must see, (B, kv_heads, S, head_dim)."""
        raise NotImplementedError

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens stored so far (for ``layer_idx``; every layer holds the same number after a
        complete forward)."""
        return self._lengths[layer_idx] if layer_idx < len(self._lengths) else 0

    def get_max_length(self) -> int | None:
        """The most tokens this cache can hold, or None when it grows."""
        return None

    def kv_length(self, new_tokens: int) -> int:
        """Length of the keys ``update`` returns once ``new_tokens`` more are stored."""
        return self.get_seq_length() + new_tokens

    def position(self) -> int | torch.Tensor:
        """Where the next tokens go (= tokens stored). An int, except in StaticCache: a 0-d
        tensor there, so compiled code does not specialise on its value."""
        return self.get_seq_length()

    def reorder(self, beam_idx: torch.LongTensor) -> None:
        """Keep batch rows ``beam_idx`` (beam search: each beam continues from its parent)."""
        raise NotImplementedError

    def crop(self, length: int) -> None:
        """Forget everything after the first ``length`` tokens (negative: drop that many)."""
        if length < 0:
            length = max(self.get_seq_length() + length, 0)
        self._lengths = [min(n, length) for n in self._lengths]

    def reset(self) -> None:
        """Empty the cache (storage is kept for reuse)."""
        self._lengths = [0] * len(self._lengths)

    def __len__(self) -> int:
        return len(self._lengths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={len(self)}, seq_length={self.get_seq_length()})"


def _check(k: torch.Tensor, v: torch.Tensor) -> None:
    if k.dim() != 4 or v.dim() != 4 or k.shape[:3] != v.shape[:3]:
        raise InvalidInputError(
            f"cache.update expects keys and values of shape (batch, kv_heads, tokens, head_dim), "
            f"got {tuple(k.shape)} and {tuple(v.shape)}"
        )


class DynamicCache(Cache):
    """A cache that grows: capacity doubles when full, so a decode step is one in-place write.

    ``update`` returns views of the storage; they stay valid until the next ``update`` of the
    same layer.
    """

    #: capacity is rounded up to a multiple of this many tokens
    block: int = 64

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # called once per layer and token: few Python operations, narrow() rather than indexing
        _check(k, v)
        if layer_idx > len(self._keys):
            raise InvalidInputError(f"cache.update: layer {layer_idx} came before layer "
                                    f"{len(self._keys)}; layers must be updated in order")
        b, h, t, d = k.shape
        if layer_idx == len(self._keys):
            self._keys.append(self._alloc(k, t))
            self._values.append(self._alloc(v, t))
            self._lengths.append(0)
        start = self._lengths[layer_idx]
        end = start + t
        kb, vb = self._keys[layer_idx], self._values[layer_idx]
        kb_b, kb_h, cap, kb_d = kb.shape
        if kb_b != b or kb_h != h or kb_d != d:
            raise InvalidInputError(
                f"cache.update: layer {layer_idx} holds (batch, kv_heads, head_dim) = "
                f"{(kb_b, kb_h, kb_d)}, got {(b, h, d)}; use a new cache for a new batch"
            )
        if end > cap:  # full: move to storage twice as large
            kb = self._grow(kb, start, end)
            vb = self._grow(vb, start, end)
            self._keys[layer_idx], self._values[layer_idx] = kb, vb
        elif kb.is_inference() and not torch.is_inference_mode_enabled():
            kb, vb = self._writable(layer_idx)
        kb.narrow(2, start, t).copy_(k)
        vb.narrow(2, start, t).copy_(v)
        self._lengths[layer_idx] = end
        return kb.narrow(2, 0, end), vb.narrow(2, 0, end)

    def storage_for(self, tokens: int) -> tuple[list[torch.Tensor], list[torch.Tensor], int] | None:
        """Room for ``tokens`` more tokens in every layer, for a caller that writes them itself
        (the fused decode step of :mod:`pretrained.backends.decoder`): the per-layer storage
        (B, kv_heads, capacity, head_dim) for keys and values, and the slot the new tokens go
        to; then :meth:`advance` records them. None when the layers hold different counts (or
        none): use :meth:`update`."""
        lengths = self._lengths
        if not lengths or any(n != lengths[0] for n in lengths):
            return None
        start = lengths[0]
        for i in range(len(self._keys)):
            kb = self._keys[i]
            if start + tokens > kb.shape[2]:
                self._keys[i] = self._grow(kb, start, start + tokens)
                self._values[i] = self._grow(self._values[i], start, start + tokens)
            elif kb.is_inference() and not torch.is_inference_mode_enabled():
                self._writable(i)
        return self._keys, self._values, start

    def advance(self, tokens: int) -> None:
        """Record ``tokens`` more tokens written into every layer's storage (see
        :meth:`storage_for`)."""
        self._lengths = [n + tokens for n in self._lengths]

    def _writable(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Storage made under torch.inference_mode cannot be written outside it: copy once."""
        self._keys[layer_idx] = self._keys[layer_idx].clone()
        self._values[layer_idx] = self._values[layer_idx].clone()
        return self._keys[layer_idx], self._values[layer_idx]

    def _alloc(self, x: torch.Tensor, tokens: int) -> torch.Tensor:
        cap = -(-tokens // self.block) * self.block
        b, h, _, d = x.shape
        return torch.empty(b, h, cap, d, dtype=x.dtype, device=x.device)

    def _grow(self, buf: torch.Tensor, used: int, need: int) -> torch.Tensor:
        b, h, cap, d = buf.shape
        new_cap = -(-max(need, 2 * cap) // self.block) * self.block
        new = torch.empty(b, h, new_cap, d, dtype=buf.dtype, device=buf.device)
        new[:, :, :used].copy_(buf[:, :, :used])
        return new

    def reorder(self, beam_idx: torch.LongTensor) -> None:
        """Rows ``beam_idx`` of the batch, in that order (the batch size may change)."""
        moved: dict[torch.device, tuple[list[int], torch.Tensor]] = {}
        for i in range(len(self._keys)):
            idx = beam_idx.to(self._keys[i].device)
            n = self._lengths[i]
            kb, vb = self._keys[i], self._values[i]
            in_place = idx.numel() == kb.shape[0] and not (
                kb.is_inference() and not torch.is_inference_mode_enabled())
            if in_place:
                # beam search, every step: move only the tokens stored, not the whole capacity
                # (copying all of it made reordering 10x the cost of the reference's), and only
                # the rows that change (a beam that continues itself stays: half the rows or
                # more); their sources are read out first, then written row by row (index_copy_
                # into the strided stored part is slower, ~1.7x for bfloat16)
                if idx.device not in moved:
                    dst = (idx != torch.arange(idx.numel(), device=idx.device)).nonzero().squeeze(1)
                    moved[idx.device] = (dst.tolist(), idx[dst])
                dst, src = moved[idx.device]
                if dst:
                    for buf in (kb, vb):
                        used = buf.narrow(2, 0, n)
                        rows = used.index_select(0, src)
                        for j, row in enumerate(dst):
                            used[row].copy_(rows[j])
            else:
                self._keys[i] = kb.index_select(0, idx)
                self._values[i] = vb.index_select(0, idx)

    def layer(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored keys and values of one layer, (B, kv_heads, seq_length, head_dim)."""
        n = self._lengths[layer_idx]
        return self._keys[layer_idx][:, :, :n], self._values[layer_idx][:, :, :n]


class StaticCache(Cache):
    """A cache of fixed size, allocated at the first ``update`` (dtype, device, batch size and
    heads come from the keys) and written in place.

    ``update`` always returns the full (B, kv_heads, max_length, head_dim) buffers, and the
    write position is a tensor (:meth:`position`), so a compiled decode step sees the same
    shapes and no changing Python number from one token to the next; the model masks the
    slots not written yet (every model here does, through :func:`pretrained.layers.causal_mask`).

    Example::

        >>> import torch
        >>> from pretrained.cache import StaticCache
        >>> cache = StaticCache(max_length=16)
        >>> k, v = cache.update(0, torch.ones(2, 3, 4, 8), torch.ones(2, 3, 4, 8))
        >>> k.shape, cache.get_seq_length(), cache.kv_length(1)
        (torch.Size([2, 3, 16, 8]), 4, 16)
    """

    def __init__(self, max_length: int) -> None:
        super().__init__()
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise InvalidInputError(f"StaticCache(max_length={max_length!r}): give the most "
                                    "tokens it must hold (prompt + new tokens), a positive int")
        self.max_length = max_length
        self._seen: list[torch.Tensor] = []  # per layer, 0-d int64: tokens written
        self._slots: torch.Tensor | None = None  # arange(max_length), to index slots

    def get_max_length(self) -> int | None:
        return self.max_length

    def kv_length(self, new_tokens: int) -> int:
        return self.max_length

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self._seen[layer_idx]) if layer_idx < len(self._seen) else 0

    def position(self) -> int | torch.Tensor:
        return self._seen[0].clone() if self._seen else 0

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx == len(self._keys):
            _check(k, v)
            b, h, _, d = k.shape
            self._keys.append(torch.zeros(b, h, self.max_length, d, dtype=k.dtype, device=k.device))
            self._values.append(torch.zeros(b, h, self.max_length, d, dtype=v.dtype, device=v.device))
            self._seen.append(torch.zeros((), dtype=torch.long, device=k.device))
            self._slots = torch.arange(self.max_length, device=k.device)
        elif layer_idx > len(self._keys):
            raise InvalidInputError(f"cache.update: layer {layer_idx} came before layer "
                                    f"{len(self._keys)}; layers must be updated in order")
        kb, vb, seen = self._keys[layer_idx], self._values[layer_idx], self._seen[layer_idx]
        t = k.shape[2]
        if not torch.compiler.is_compiling():  # checks that read values: eager only
            _check(k, v)
            if int(seen) + t > self.max_length:
                raise InvalidInputError(
                    f"StaticCache is full: it holds {self.max_length} tokens and "
                    f"{int(seen) + t} were asked for; create it with a larger max_length "
                    "(prompt length + max_new_tokens)")
            if kb.shape[0] != k.shape[0]:
                raise InvalidInputError(f"StaticCache was allocated for batch size {kb.shape[0]}, "
                                        f"got {k.shape[0]}; use a new cache for a new batch")
            if kb.is_inference() and not torch.is_inference_mode_enabled():
                # storage made under torch.inference_mode cannot be written outside it: copy once
                kb, vb, seen = kb.clone(), vb.clone(), seen.clone()
                self._keys[layer_idx], self._values[layer_idx], self._seen[layer_idx] = kb, vb, seen
        slots = self._slots[:t] + seen
        kb.index_copy_(2, slots, k)
        vb.index_copy_(2, slots, v)
        seen.add_(t)
        return kb, vb

    def storage_for(self, tokens: int) -> tuple[list[torch.Tensor], list[torch.Tensor], int] | None:
        """As :meth:`DynamicCache.storage_for`: the (B, kv_heads, max_length, head_dim) buffers
        and the slot the next ``tokens`` go to; None where they do not fit (:meth:`update` then
        raises the error that says so) or the layers hold different counts."""
        if not self._seen:
            return None
        start = int(self._seen[0])
        if start + tokens > self.max_length or any(int(n) != start for n in self._seen):
            return None
        for i, kb in enumerate(self._keys):
            if kb.is_inference() and not torch.is_inference_mode_enabled():
                self._keys[i], self._values[i] = kb.clone(), self._values[i].clone()
                self._seen[i] = self._seen[i].clone()
        return self._keys, self._values, start

    def advance(self, tokens: int) -> None:
        """Record ``tokens`` more tokens written into every layer's buffers."""
        for seen in self._seen:
            seen.add_(tokens)

    def reorder(self, beam_idx: torch.LongTensor) -> None:
        """Rows ``beam_idx`` of the batch, in place (the batch size must stay the same)."""
        for buf in (*self._keys, *self._values):
            if beam_idx.numel() != buf.shape[0]:
                raise InvalidInputError(f"StaticCache.reorder: {beam_idx.numel()} rows asked for "
                                        f"a cache of batch size {buf.shape[0]}")
            buf.copy_(buf.index_select(0, beam_idx.to(buf.device)))

    def crop(self, length: int) -> None:
        if length < 0:
            length = max(self.get_seq_length() + length, 0)
        for seen in self._seen:
            seen.clamp_(max=length)

    def reset(self) -> None:
        for seen in self._seen:
            seen.zero_()
        for buf in (*self._keys, *self._values):
            buf.zero_()

    def __len__(self) -> int:
        return len(self._seen)


class EncoderDecoderCache:
    """The decoder cache of an encoder-decoder model: self-attention keys/values grow by one
    token per step (:attr:`self_attention_cache`); cross-attention keys/values are projected from
    the encoder output once, at the first step, and only read afterwards.

    A layer's cross-attention asks :meth:`cross` for its keys/values and, when it gets None,
    projects them and hands them to :meth:`set_cross`. Lengths and positions are the
    self-attention cache's.

    Example::

        >>> import torch
        >>> from pretrained.cache import EncoderDecoderCache
        >>> cache = EncoderDecoderCache()
        >>> cache.cross(0) is None
        True
        >>> cache.set_cross(0, torch.zeros(1, 2, 7, 4), torch.zeros(1, 2, 7, 4))
        >>> cache.cross(0)[0].shape, cache.get_seq_length()
        (torch.Size([1, 2, 7, 4]), 0)
    """

    def __init__(self, self_attention_cache: Cache | None = None, sequences_per_input: int = 1) -> None:
        self.self_attention_cache = self_attention_cache if self_attention_cache is not None \
            else DynamicCache()
        self._cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # decoder rows per encoder row: generate() gives beams of one input one encoder output
        # (their cross-attention keys/values are projected and stored once, not per beam)
        self.sequences_per_input = sequences_per_input

    # the self-attention cache's interface, so decoder layers call ``update`` as in a decoder
    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.self_attention_cache.update(layer_idx, k, v)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.self_attention_cache.get_seq_length(layer_idx)

    def kv_length(self, new_tokens: int) -> int:
        return self.self_attention_cache.kv_length(new_tokens)

    def position(self) -> int | torch.Tensor:
        return self.self_attention_cache.position()

    def get_max_length(self) -> int | None:
        return self.self_attention_cache.get_max_length()

    def cross(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cross-attention keys/values of ``layer_idx``, or None before the first step."""
        return self._cross.get(layer_idx)

    def set_cross(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> None:
        _check(k, v)
        self._cross[layer_idx] = (k, v)

    def reorder(self, beam_idx: torch.LongTensor, *, cross: bool = True) -> None:
        """Keep batch rows ``beam_idx``. Beam search passes ``cross=False``: its beams only
        move within the rows of their own input, whose cross-attention keys/values are equal."""
        self.self_attention_cache.reorder(beam_idx)
        if cross:
            for i, (k, v) in self._cross.items():
                idx = beam_idx.to(k.device)
                self._cross[i] = (k.index_select(0, idx), v.index_select(0, idx))

    def crop(self, length: int) -> None:
        self.self_attention_cache.crop(length)

    def reset(self) -> None:
        self.self_attention_cache.reset()
        self._cross.clear()

    def __len__(self) -> int:
        return len(self.self_attention_cache)

    def __repr__(self) -> str:
        return (f"EncoderDecoderCache(layers={len(self)}, seq_length={self.get_seq_length()}, "
                f"cross_layers={len(self._cross)})")
