"""The channels-last start of convolution chains in the backend seam (pretrained/backends/conv.py): swapped in for
nn.Conv2d by type, the same numbers as the plain module, composing with autograd, copies, pickling,
dtype moves, torch.compile and save_pretrained (which writes contiguous tensors)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from pretrained import AutoModelForImageClassification
from pretrained.backends import accelerate, plain
from pretrained.backends.conv import CpuConv2d

FIX = Path(__file__).parent / "fixtures" / "models"
CL = torch.channels_last


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8).eval(), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1, stride=2))


def test_the_swap_starts_pictures_channels_last_and_leaves_other_inputs_as_they_come():
    model = net()
    want = {k: v.clone() for k, v in model.state_dict().items()}
    assert accelerate(model) == 3
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(type(m) is CpuConv2d for m in convs)
    assert all(torch.equal(want[k], v) for k, v in model.state_dict().items())
    assert all(m.weight.is_contiguous() for m in convs)   # weights untouched
    with torch.no_grad():
        picture = convs[0](torch.randn(1, 3, 8, 8))       # 3 channels: started channels-last
        assert picture.is_contiguous(memory_format=CL) and not picture.is_contiguous()
        kept = convs[1](picture)                           # a channels-last input stays so
        assert kept.is_contiguous(memory_format=CL) and not kept.is_contiguous()
        maps = convs[2](torch.randn(1, 8, 8, 8))           # an NCHW map of 8 channels: not copied
        assert maps.is_contiguous()
    assert plain(model) == 3
    assert all(type(m) is nn.Conv2d for m in convs)


def test_conv1d_is_not_swapped():
    model = nn.Sequential(nn.Conv1d(2, 2, 3))
    assert accelerate(model) == 0 and type(model[0]) is nn.Conv1d


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_numbers_as_the_plain_modules(dtype):
    model = net().to(dtype)
    fast = copy.deepcopy(model)
    accelerate(fast)
    x = torch.randn(2, 3, 13, 17).to(dtype)
    with torch.no_grad():
        want, got = model(x), fast(x)
    assert got.is_contiguous(memory_format=CL)
    tol = 1e-5 if dtype == torch.float32 else 2e-2 * want.abs().max().item()
    assert (got.float() - want.float()).abs().max() <= tol
    with torch.no_grad():   # an unbatched (C, H, W) picture takes the plain path
        assert (fast[0](x[0]).float() - model[0](x[0]).float()).abs().max() <= tol


def test_gradients_equal_the_plain_modules():
    model = net().train()
    fast = copy.deepcopy(model)
    accelerate(fast)
    x = torch.randn(2, 3, 9, 9)
    model(x).square().sum().backward()
    fast(x).square().sum().backward()
    for (name, a), b in zip(model.named_parameters(), fast.parameters()):
        assert (a.grad - b.grad).abs().max() <= 1e-4 * a.grad.abs().max().item() + 1e-6, name


def test_copies_pickles_moves_and_compile_keep_the_numbers():
    model = net()
    accelerate(model)
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        want = model(x)
        again = pickle.loads(pickle.dumps(model))
        assert type(again[0]) is CpuConv2d and torch.equal(again(x), want)
        half = copy.deepcopy(model).to(torch.bfloat16)
        assert half(x.to(torch.bfloat16)).is_contiguous(memory_format=CL)
        torch._dynamo.reset()
        assert (torch.compile(model)(x) - want).abs().max() <= 1e-5


def test_a_swapped_model_saves_contiguous_tensors_that_load_back(tmp_path):
    model = AutoModelForImageClassification.from_pretrained(FIX / "resnet-tiny-imgcls")
    assert any(type(m) is CpuConv2d for m in model.modules())
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    stored = load_file(str(FIX / "resnet-tiny-imgcls" / "model.safetensors"))
    assert sorted(saved) == sorted(stored) and all(torch.equal(saved[k], stored[k]) for k in stored)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        back = AutoModelForImageClassification.from_pretrained(tmp_path)
        assert torch.equal(back(pixel_values=x).logits, model(pixel_values=x).logits)
