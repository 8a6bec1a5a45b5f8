"""CPU speed-ups of the torch face nets that leave their outputs unchanged (within 1e-5).

Measured on one thread (docs/benchmarks.md, "CPU throughput and ONNX backend"):

* **channels-last** memory format for convolutional nets (timm EfficientNets): oneDNN's
  convolutions run on NHWC tensors without reordering every layer's input;
* **oneDNN linear layers**: each ``nn.Linear`` is replaced by
  ``torch.utils.mkldnn.MkldnnLinear`` (same weights, packed once for oneDNN). PyTorch's
  default fp32 ``linear`` calls MKL's sgemm, which ran at about half the speed of oneDNN's
  on the AMD EPYC benchmark machine; ViT-B/16 is almost all linear layers.

Both apply to inference on the CPU in float32 only (the extractors call
:func:`tune_for_cpu` in that case).
"""

from __future__ import annotations

import torch
from torch import nn


def mkldnn_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` under ``module`` by oneDNN's (in place, for inference
    only: the replacements have no gradients). Returns how many were replaced; 0 when this
    torch has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return 0
    from torch.utils.mkldnn import MkldnnLinear

    count = 0
    for name, child in module.named_children():
        if type(child) is nn.Linear and child.weight.dtype == torch.float32:
            setattr(module, name, MkldnnLinear(child, torch.float32))
            count += 1
        else:
            count += mkldnn_linears(child)
    return count


def tune_for_cpu(
    net: nn.Module, channels_last: bool = False, onednn_linear: bool = True
) -> nn.Module:
    """Make a float32 eval-mode net faster for CPU inference, outputs unchanged (in place).

    Args:
        net: the net (on the CPU, float32, eval mode).
        channels_last: store its 4-d weights channels-last (convolutional nets; feed it
            channels-last inputs too).
        onednn_linear: replace its linear layers by oneDNN's (:func:`mkldnn_linears`).

    Returns:
        ``net``.
    """
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if onednn_linear:
        mkldnn_linears(net)
    return net
