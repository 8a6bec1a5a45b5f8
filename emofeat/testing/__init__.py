"""Test helpers for plugin authors: check that an extractor keeps emofeat's contract.

:func:`check_extractor` runs an extractor the way users run it (through
:func:`emofeat.extract` into a store and through :func:`emofeat.process_file`) on a short
input written by :mod:`emofeat.samples`, and checks what comes back::

    from emofeat.testing import check_extractor

    def test_contract():
        check_extractor("loudness", {"loudness": {"frame": 0.1}})

Every broken rule raises :class:`AssertionError` with a message naming the extractor, the
stream and the rule. The package imports nothing heavy (no pytest, no torch): the engine is
loaded when a check runs.

One job per module (all private; this package re-exports the public names):
:mod:`~emofeat.testing.inputs` (``sample_input``), :mod:`~emofeat.testing.declarations`
(``check_class``: the class and its stream specs), :mod:`~emofeat.testing.contract`
(``check_extractor``: the run, the round trip) and :mod:`~emofeat.testing.outputs` (the
checks of the stored item: grid, streams, provenance).
"""

from __future__ import annotations

from emofeat.testing.contract import ContractReport, check_extractor
from emofeat.testing.declarations import check_class
from emofeat.testing.inputs import sample_input
from emofeat.testing.outputs import PROVENANCE as PROVENANCE
from emofeat.testing.outputs import StreamReport

__all__ = ["ContractReport", "StreamReport", "check_class", "check_extractor", "sample_input"]
