"""Gradient (activation) checkpointing for any model of this library, without touching its file.

While training, each repeated block (every element of the outermost ``nn.ModuleList`` s: the
decoder or encoder layers, as :mod:`pretrained.placement` cuts a model) runs under
``torch.utils.checkpoint.checkpoint``: only the block's inputs are kept for the backward pass,
which runs the block again to get its activations back (less memory, about one more forward of
compute). The block *instance's* ``forward`` is wrapped, so module names, state-dict keys and
module hooks (outside the checkpoint: they do not run twice) stay as they are, and whatever sits
inside the block (LoRA adapters, quantized linears, the backend seam's swapped modules) is
recomputed with it. Out of training, or under ``torch.no_grad()``, a block runs as before.

A KV cache does not mix with recomputation (the backward pass would write each block's keys a
second time): an empty cache handed to a checkpointed block is dropped with a warning, as the
reference drops it (``use_cache=True`` then returns an empty cache); a cache that already holds
tokens (prefix tuning's prefix, past_key_values) cannot be dropped without changing the result, so
such a call runs the block without checkpointing (warned once: same gradients, no memory saved).

Example::

    >>> import torch
    >>> from torch import nn
    >>> from pretrained.checkpointing import enable_gradient_checkpointing, is_checkpointed
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.ModuleList([nn.Linear(4, 4) for _ in range(2)]))
    >>> enable_gradient_checkpointing(net)
    2
    >>> is_checkpointed(net)
    True
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import UnsupportedOptionError

logger = logging.getLogger("pretrained")

__all__ = ["CHECKPOINT_OPTIONS", "repeated_blocks", "enable_gradient_checkpointing",
           "disable_gradient_checkpointing", "is_checkpointed", "enable_input_require_grads",
           "disable_input_require_grads", "GradientCheckpointingMixin"]

# what torch.utils.checkpoint.checkpoint takes besides the function and its inputs
CHECKPOINT_OPTIONS = ("use_reentrant", "preserve_rng_state", "determinism_check", "debug", "context_fn")
_warned: set[str] = set()


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The elements of the outermost ``nn.ModuleList`` s (not descending into them: a list inside
    a block, such as experts, is recomputed with its block), each once, in module order."""
    out: list[nn.Module] = []
    seen: set[int] = set()

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                for block in child:
                    if id(block) not in seen:   # a layer shared by several slots (ALBERT-style)
                        seen.add(id(block))
                        out.append(block)
            else:
                visit(child)

    visit(model)
    return out


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _is_cache(value: Any) -> bool:
    from .cache import Cache, EncoderDecoderCache

    return isinstance(value, (Cache, EncoderDecoderCache))


def _holds_tokens(cache: Any) -> bool:
    from .cache import StaticCache

    return isinstance(cache, StaticCache) or cache.get_seq_length() != 0


def _checkpointed_forward(block: nn.Module, forward: Any, options: dict[str, Any],
                          *args: Any, **kwargs: Any) -> Any:
    if not (block.training and torch.is_grad_enabled()):
        return forward(*args, **kwargs)
    caches = [v for v in (*args, *kwargs.values()) if _is_cache(v)]
    if any(_holds_tokens(c) for c in caches):
        # a prefix (prefix tuning) or past tokens: the block writes its keys after them, and a
        # recomputation would write them again; such a call keeps its activations
        _warn_once(f"gradient checkpointing: {type(block).__name__} was given a KV cache holding "
                   "tokens (prefix tuning, or past_key_values while training): those calls run "
                   "without checkpointing (same gradients, no memory saved)")
        return forward(*args, **kwargs)
    if caches or kwargs.get("use_cache"):
        _warn_once(f"use_cache=True is incompatible with gradient checkpointing in {type(block).__name__}: "
                   "the cache is not filled while training (pass use_cache=False to silence this)")
        args = tuple(None if _is_cache(a) else a for a in args)
        kwargs = {k: None if _is_cache(v) else v for k, v in kwargs.items()}
        if kwargs.get("use_cache"):
            kwargs["use_cache"] = False
    if options.get("use_reentrant", False):
        # the reentrant variant takes tensors positionally only: bind the keywords first
        return checkpoint(partial(forward, **kwargs), *args, **options)
    return checkpoint(forward, *args, **options, **kwargs)


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = sorted(set(options) - set(CHECKPOINT_OPTIONS))
    if unknown:
        raise UnsupportedOptionError(
            f"gradient_checkpointing_kwargs {unknown}: torch.utils.checkpoint.checkpoint takes "
            f"{', '.join(CHECKPOINT_OPTIONS)}")
    # non-reentrant unless asked: it works with frozen inputs and keyword arguments
    options.setdefault("use_reentrant", False)
    return options


def enable_gradient_checkpointing(model: nn.Module, options: dict[str, Any] | None = None) -> int:
    """Checkpoint each repeated block of ``model`` while training (again with new ``options``,
    the keywords of ``torch.utils.checkpoint.checkpoint``, when already on). Returns the number of
    blocks; a model without a ``ModuleList`` of blocks is refused."""
    options = _check_options(options)
    blocks = repeated_blocks(model)
    if not blocks:
        raise UnsupportedOptionError(
            f"gradient checkpointing: {type(model).__name__} has no repeated blocks (no nn.ModuleList "
            "of layers) to recompute; train it without gradient_checkpointing")
    for block in blocks:
        inner = vars(block).get("_checkpoint_inner", block.forward)
        block._checkpoint_inner = inner
        block.forward = partial(_checkpointed_forward, block, inner, options)
    return len(blocks)


def disable_gradient_checkpointing(model: nn.Module) -> None:
    """Undo :func:`enable_gradient_checkpointing`: every block runs its own forward again."""
    for block in repeated_blocks(model):
        if "_checkpoint_inner" in vars(block):
            del block._checkpoint_inner
            vars(block).pop("forward", None)


def is_checkpointed(model: nn.Module) -> bool:
    """Whether any block of ``model`` is checkpointed."""
    return any("_checkpoint_inner" in vars(m) for m in model.modules())


def _input_embeddings(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_input_embeddings", None)
    try:
        emb = get() if get is not None else None
    except (NotImplementedError, AttributeError):
        emb = None
    if emb is None:
        emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    return emb


def _require_grads(module: nn.Module, inputs: Any, output: Any) -> None:
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        output.requires_grad_(True)


def enable_input_require_grads(model: nn.Module) -> bool:
    """Make the input embeddings' output require gradients (a forward hook), so that under frozen
    embeddings the blocks still get an input that needs a gradient (the reentrant checkpoint
    needs one; LoRA under frozen layers gets its gradients through it). False when the model
    has no embeddings (a vision model)."""
    emb = _input_embeddings(model)
    if emb is None:
        return False
    if getattr(emb, "_require_grads_hook", None) is None:
        emb._require_grads_hook = emb.register_forward_hook(_require_grads)
    return True


def disable_input_require_grads(model: nn.Module) -> None:
    emb = _input_embeddings(model)
    hook = getattr(emb, "_require_grads_hook", None) if emb is not None else None
    if hook is not None:
        hook.remove()
        emb._require_grads_hook = None


class GradientCheckpointingMixin:
    """The reference's model methods, for :class:`~pretrained.modeling.PreTrainedModel`::

        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.is_gradient_checkpointing          # True
        model.gradient_checkpointing_disable()
    """

    supports_gradient_checkpointing = True

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Checkpoint every block while training (see :mod:`pretrained.checkpointing`); the
        input embeddings' output then requires gradients, as the reference sets it."""
        enable_gradient_checkpointing(self, gradient_checkpointing_kwargs)
        enable_input_require_grads(self)

    def gradient_checkpointing_disable(self) -> None:
        disable_gradient_checkpointing(self)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return is_checkpointed(self)

    # the reference 5.x's newer names for the same
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        self.gradient_checkpointing_enable(activation_checkpointing_kwargs)

    def activation_checkpointing_disable(self) -> None:
        self.gradient_checkpointing_disable()

    @property
    def is_activation_checkpointing(self) -> bool:
        return is_checkpointed(self)

    def enable_input_require_grads(self) -> None:
        enable_input_require_grads(self)

    def disable_input_require_grads(self) -> None:
        disable_input_require_grads(self)
