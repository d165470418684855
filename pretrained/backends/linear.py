"""CPU linear layers that the backend pass swaps in for ``nn.Linear`` and GPT-2's ``Conv1D``.

:class:`CpuLinear` is an ``nn.Linear`` (same parameters, same state_dict keys, same numbers to
float32 rounding) whose forward takes the fastest path that applies right now:

1. up to 16 rows, autograd off: the C rows kernels (:mod:`.rows`) on the weight where it lies;
   several linears that the model calls one after another on the same input (q/k/v, gate/up)
   run as one kernel call (:class:`LinearGroup`);
2. one row where no kernel applies: ``torch.mv`` (F.linear re-lays a bfloat16 weight out on every
   call, about twice as slow at decoder shapes);
3. more rows with packing turned on: oneDNN pre-packed weights (:mod:`.packed`);
4. otherwise ``F.linear``: training, autograd, other devices and dtypes, CPU autocast.
Under ``torch.compile`` it calls the ``pretrained::rows_linear`` custom op (:mod:`.ops`), so the
kernel is part of the compiled graph.

Siblings are found by watching, not by names: during a module's first few inference calls, a
linear called right after a sibling (same parent module) on the very same input tensor joins that
sibling's group. From then on the group's first member computes every member's output in one
call and leaves each sibling its slice, handed out once and only for that same input (the same
tensor object at the same version, the same weights): if the model calls a sibling on another
input, the sibling computes alone, and a group whose slices keep going unused is dissolved.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv1d import Conv1D
from . import ops
from .packed import PackedWeights, _version, packed_linear, packed_linear_ok   # (_version: for quantized.py too)
from .rows import few_rows, rows_linear, rows_linear_many

LEARN_CALLS = 4          # inference calls during which a linear may join a sibling's group
RUNTIME_KEYS = ("_group", "_slot", "_seen", "_packed")   # never copied or pickled
# the latest observed call: (weakref to its input, the input's version, weakref to the linear);
# weak both ways, so a deleted model or input is not kept alive by this
_last: tuple | None = None


class LinearGroup:
    """Linears of one parent called in a row on the same input: the first computes them all.

    ``memo``: (weakref to the input, its version, weight versions, outputs not yet handed out)."""

    __slots__ = ("members", "memo", "misses")

    def __init__(self, first: CpuLinear, second: CpuLinear) -> None:
        self.members: list[CpuLinear] = []
        self.memo: tuple | None = None
        self.misses = 0
        self.add(first)
        self.add(second)

    def add(self, linear: CpuLinear) -> None:
        linear.__dict__["_group"], linear.__dict__["_slot"] = self, len(self.members)
        self.members.append(linear)

    def dissolve(self) -> None:
        for m in self.members:
            m.__dict__.pop("_group", None)
            m.__dict__["_seen"] = LEARN_CALLS   # learnt: it calls alone
        self.members, self.memo = [], None

    def output(self, linear: CpuLinear, x: torch.Tensor) -> torch.Tensor | None:
        """``linear(x)`` from the group's last joint call or a new one; None: compute alone."""
        slot = linear.__dict__["_slot"]
        memo = self.memo
        if memo is not None and memo[0]() is x and memo[1] == _version(x):
            outs = memo[3]
            y = outs[slot]
            if y is not None and memo[2][slot] == _version(linear.weight):
                outs[slot] = None   # once: the model may write into it in place
                self.misses = 0
                return y
        if slot:
            self.misses += 1
            if self.misses > 2 * len(self.members):
                self.dissolve()
            return None
        ms = self.members
        y = self.compute(x)
        if y is None:
            return None
        outs = list(y.split_with_sizes([m.out_features for m in ms], -1))   # (split: ~2x the cost)
        first, outs[0] = outs[0], None
        self.memo = (weakref.ref(x), _version(x), [_version(m.weight) for m in ms], outs)
        return first


    def compute(self, x: torch.Tensor) -> torch.Tensor | None:
        """Every member's output of ``x``, side by side on the last axis (None: not here)."""
        ms = self.members
        return rows_linear_many(x, [m.weight for m in ms], [m.bias for m in ms])


def _observe(linear: nn.Module, x: torch.Tensor, group_class: type = LinearGroup) -> None:
    """Record this call; join the previous call's linear when it is a sibling on the same input
    (and of the same class: ``group_class`` computes a group of that class's layers)."""
    global _last
    d = linear.__dict__
    d["_seen"] = d.get("_seen", 0) + 1
    prev, _last = _last, (weakref.ref(x), _version(x), weakref.ref(linear))
    if prev is None or prev[0]() is not x or prev[1] != _version(x):
        return
    other = prev[2]()
    if other is None or other is linear or type(other) is not type(linear) \
            or other.__dict__.get("_parent") != d.get("_parent") \
            or other.in_features != linear.in_features or "_group" in d:
        return
    group = other.__dict__.get("_group")
    if group is None:
        group_class(other, linear)
    elif group.members[-1] is other and len(group.members) < 8:   # MAXW in rows_kernel.c
        group.add(linear)


def grouped_output(linear: nn.Module, x: torch.Tensor, group_class: type = LinearGroup) -> torch.Tensor | None:
    """This linear's rows from its sibling group's one call when it has a group (None when the group
    cannot answer this input); otherwise, in the first inference calls, learn whether it has one."""
    d = linear.__dict__
    group = d.get("_group")
    if group is not None:
        return group.output(linear, x)
    if d.get("_seen", 0) < LEARN_CALLS and not torch.is_grad_enabled():
        _observe(linear, x, group_class)
    return None


class CpuLinear(nn.Linear):
    """``nn.Linear`` with the CPU fast paths above; swapped in by
    :func:`pretrained.backends.accelerate`, swapped back by :func:`pretrained.backends.plain`."""

    #: oneDNN pre-packed weights for more than 16 rows (opt-in; set by set_weight_packing)
    packing: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return ops.linear(x, self.weight, self.bias)
        w, b = self.weight, self.bias
        few = few_rows(x)
        if few:
            y = grouped_output(self, x)
            if y is not None:
                return y
            y = rows_linear(x, w, b)
            if y is not None:
                return y
        if self.packing and packed_linear_ok(x, w):
            return packed_linear(x, _packed_cache(self), (w,), (b,))
        if few and x.numel() == x.shape[-1] and not torch.is_grad_enabled() and x.dtype == w.dtype:
            v = x.reshape(-1)   # one row: a matrix-vector product (see the module doc)
            y = torch.mv(w, v) if b is None else torch.addmv(b, w, v)
            return y.view(*x.shape[:-1], -1)
        return F.linear(x, w, b)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}


def _packed_cache(module: nn.Module) -> PackedWeights:
    cache = module.__dict__.get("_packed")
    if cache is None:
        cache = module.__dict__["_packed"] = PackedWeights()
    return cache


class CpuConv1D(Conv1D):
    """GPT-2's ``Conv1D`` with opt-in packed weights for CPU inference (its (in, out) weight is
    not the rows kernels' layout; transposing it per call would cost what they save)."""

    packing: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.t()
        if self.packing and packed_linear_ok(x, w):
            return packed_linear(x, _packed_cache(self), (w,), (self.bias,))
        return F.linear(x, w, self.bias)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME_KEYS}
