"""Audio extractors: PDEM (audEERING's dimensional speech emotion model) and voice activity.

See docs/audio.md. The PDEM weights are CC BY-NC-SA 4.0 (non-commercial): the registry asks
for an explicit licence opt-in before it fetches or uses them.

Public API (``__all__``; the submodules are private):

* PDEM on PyTorch, for fine-tuning: :class:`PdemNetwork` and :func:`load_network` (from a
  Hugging Face id or folder, an audonnx export or an emofeat PDEM checkpoint),
  :func:`save_checkpoint` (the ``emofeat-pdem-checkpoint`` folder the ``pdem`` extractor
  loads), the extra sequence heads :class:`SequenceHead`, :func:`build_head` and the class
  name recorded for them, :data:`HEAD_CLASS`;
* PDEM's constants: :data:`HUB_ID` (the Hugging Face id of the released weights) and
  :data:`SAMPLING_RATE` (16 kHz, the only rate the network takes).

They are imported on first use (the PyTorch ones need PyTorch and transformers), so
importing this package, which the plugin manager does for every run, stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import emofeat
from emofeat_plugins import lazy_getattr

if TYPE_CHECKING:
    from .pdem import HUB_ID, SAMPLING_RATE
    from .pdem_torch import (
        HEAD_CLASS,
        PdemNetwork,
        SequenceHead,
        build_head,
        load_network,
        save_checkpoint,
    )

__all__ = [
    "HEAD_CLASS",
    "HUB_ID",
    "SAMPLING_RATE",
    "PdemNetwork",
    "SequenceHead",
    "build_head",
    "load_network",
    "save_checkpoint",
]

# public name -> private submodule that defines it, imported when the name is first read;
# the constants come from the light ONNX module, not from the PyTorch one
_LAZY = {
    "HUB_ID": "pdem",
    "SAMPLING_RATE": "pdem",
    "HEAD_CLASS": "pdem_torch",
    "PdemNetwork": "pdem_torch",
    "SequenceHead": "pdem_torch",
    "build_head": "pdem_torch",
    "load_network": "pdem_torch",
    "save_checkpoint": "pdem_torch",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


@emofeat.hookimpl
def register_extractors(register):
    from .pdem import Pdem
    from .vad import Vad

    register(Pdem)
    register(Vad)


@emofeat.hookimpl
def register_models(register):
    from .models import MODELS

    for model in MODELS:
        register(model)
