"""Adaptive model selection: which final group model an unknown input goes to, and whether it helps.

The runtime, which ``grids select`` and ``grids restore`` load (no report code, no evaluation):

=================  ==============================================================================
module             its one job
=================  ==============================================================================
``signatures``     the signature space: an image's per-layer GGDs from self-augmented patches;
                   the reference tables of degraded sets (``python -m grids.selection.signatures``)
``statistics``     the out-of-distribution statistics, a checked registry, and their thresholds
``gain``           the expected gain of the chosen model over the input, with an interval
                   (``python -m grids.selection.gain`` writes the references' realised gains)
``selector``       the selector: signature recipe, group choice, judge and gain predictor
``fallback``       what a flagged input gets (``selection.fallback``), the rule's one home
=================  ==============================================================================

The benchmarks, which read the whole evaluation and draw figures:

=================  ==============================================================================
``report``         how well the selector chooses, and whether its divergence predicts the result
``failure``        whether a training-free score predicts that the chosen model will not help
``routers``        the selector against trained routers, the single best model and the oracle
=================  ==============================================================================

Nothing here is imported by this package's ``__init__``: importing ``grids.selection.selector``
loads the runtime alone (tests/test_layout.py).
"""
