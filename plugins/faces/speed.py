"""CPU speed-ups of the torch face nets that leave their outputs unchanged (within 1e-5).

Measured on one thread (docs/benchmarks.md, "CPU throughput and ONNX backend"):

* **channels-last** memory format for convolutional nets (timm EfficientNets): oneDNN's
  convolutions run on NHWC tensors without reordering every layer's input;
* **oneDNN linear layers**: each ``nn.Linear`` is replaced by :class:`OneDNNLinear`
  (oneDNN's linear on dense tensors; ``torch.utils.mkldnn.MkldnnLinear`` where that
  operator is missing), and the GELU after a transformer MLP's first layer is computed
  inside it (:func:`fuse_mlp_gelu`). PyTorch's default fp32 ``linear`` calls MKL's sgemm,
  which ran at about half the speed of oneDNN's on the AMD EPYC benchmark machine; ViT-B/16
  is almost all linear layers.

Both apply to inference on the CPU in float32 only (the extractors call
:func:`tune_for_cpu` in that case).
"""

from __future__ import annotations

import functools

import torch
from torch import nn


class OneDNNLinear(nn.Module):
    """``nn.Linear`` for float32 CPU inference, computed by oneDNN on dense tensors.

    ``torch.ops.mkldnn._linear_pointwise`` is the oneDNN linear PyTorch's own compiler
    (inductor) emits; called directly it skips what ``MkldnnLinear`` pays on every call,
    converting its input to oneDNN's layout and its output back (11 % of ViT-B/16's time on
    one thread). Same results as ``MkldnnLinear`` (bit for bit on the benchmark machine).
    It is a private operator: :func:`_pointwise_works` checks it before it is used.
    """

    def __init__(self, linear: nn.Linear | OneDNNLinear, gelu: str = "") -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # "" or a GELU applied to the output inside oneDNN's kernel ("none": erf, "tanh")
        self.post, self.algorithm = ("gelu", gelu) if gelu else ("none", "")
        self.register_buffer("weight", linear.weight.detach().clone())
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), self.weight, self.bias, self.post, [], self.algorithm
        )


@functools.cache
def _pointwise_works() -> bool:
    """True when this torch has oneDNN's dense linear operator and it agrees with
    ``F.linear`` (within 1e-5) on a small case."""
    try:
        gen = torch.Generator().manual_seed(0)
        lin = nn.Linear(16, 8)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(8, 16, generator=gen))
            lin.bias.copy_(torch.randn(8, generator=gen))
            x = torch.randn(2, 3, 16, generator=gen)
            ok = torch.allclose(OneDNNLinear(lin)(x), lin(x), atol=1e-5, rtol=0)
            for kind in ("none", "tanh"):
                want = nn.functional.gelu(lin(x), approximate=kind)
                ok = ok and torch.allclose(OneDNNLinear(lin, kind)(x), want, atol=1e-5, rtol=0)
            return bool(ok)
    except Exception:  # no such operator, or it refuses these inputs
        return False


def mkldnn_linears(module: nn.Module) -> int:
    """Replace every float32 ``nn.Linear`` under ``module`` by oneDNN's (in place, for
    inference only: the replacements have no gradients): :class:`OneDNNLinear` where this
    torch's operator works, else ``torch.utils.mkldnn.MkldnnLinear``. Returns how many were
    replaced; 0 when this torch has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return 0
    from torch.utils.mkldnn import MkldnnLinear

    dense = _pointwise_works()
    count = 0
    for name, child in module.named_children():
        if type(child) is nn.Linear and child.weight.dtype == torch.float32:
            setattr(
                module, name, OneDNNLinear(child) if dense else MkldnnLinear(child, torch.float32)
            )
            count += 1
        else:
            count += mkldnn_linears(child)
    return count


def fuse_mlp_gelu(module: nn.Module) -> int:
    """In every timm ``Mlp`` under ``module`` whose ``fc1`` is a :class:`OneDNNLinear` and
    whose activation is ``nn.GELU``, compute the GELU inside ``fc1``'s oneDNN kernel (the
    activation becomes ``nn.Identity``): ViT-B/16 10 % faster on one thread, the same values
    (bit for bit on the benchmark machine). Returns how many were fused."""
    try:
        from timm.layers import Mlp
    except ImportError:  # no timm: no timm blocks to fuse
        return 0
    count = 0
    for mod in module.modules():
        act, fc1 = getattr(mod, "act", None), getattr(mod, "fc1", None)
        # timm's Mlp.forward is fc1 -> act -> dropout -> norm -> fc2
        if type(mod) is Mlp and type(act) is nn.GELU and type(fc1) is OneDNNLinear:
            if fc1.post == "none" and act.approximate in ("none", "tanh"):
                mod.fc1, mod.act = OneDNNLinear(fc1, act.approximate), nn.Identity()
                count += 1
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
        fuse_mlp_gelu(net)
    return net
