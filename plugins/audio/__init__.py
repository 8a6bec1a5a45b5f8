"""Audio extractors: PDEM (audEERING's dimensional speech emotion model) and voice activity.

See docs/audio.md. The PDEM weights are CC BY-NC-SA 4.0 (non-commercial): the registry asks
for an explicit licence opt-in before it fetches or uses them.
"""

from __future__ import annotations

import emofeat


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
