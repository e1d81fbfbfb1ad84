"""The StackRec report's verdict: stacking pays only when it is faster AND its test MRR@5 is
within the tolerance of the from-scratch model's."""

import pytest

from distrec.stackrec.report import MRR_TOLERANCE, verdict


def row(variant, speedup, mrr):
    return {"variant": variant, "speedup_vs_scratch": speedup, "test": {"mrr@5": mrr}}


@pytest.mark.parametrize("speedup, mrr, outcome", [
    (1.4, 0.100, "stacking pays here"),
    (1.4, 0.100 * (1 - MRR_TOLERANCE) + 1e-9, "stacking pays here"),
    (1.4, 0.0955, "stacking pays here"),
    (1.4, 0.090, "faster, but beyond the 5% allowed below scratch"),
    (0.8, 0.120, "stacking does NOT pay here"),
])
def test_verdict_needs_speed_and_comparable_accuracy(speedup, mrr, outcome):
    text = verdict([row("scratch", None, 0.100), row("adjacent", speedup, mrr)], "ts")
    assert text.startswith(f"adjacent: {speedup:.2f}x the scratch model's speed") and outcome in text
    assert f"({(mrr - 0.1) / 0.1:+.1%})" in text


def test_no_scratch_no_verdict():
    assert verdict([row("adjacent", None, 0.1)], "cl") == "no from-scratch baseline: nothing to compare"
