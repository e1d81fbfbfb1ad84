"""The StackRec report's verdict: stacking pays only when it is faster AND its test MRR@5 is
within the tolerance of the from-scratch model's."""

import pytest

from distrec.methods.stackrec.report import MRR_TOLERANCE, verdict


def row(variant, speedup, mrr, se=None):
    return {"variant": variant, "speedup_vs_scratch": speedup, "test": {"mrr@5": mrr, "mrr@5_se": se}}


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


def test_a_gap_within_two_standard_errors_counts_as_comparable():
    # 10 % below scratch: beyond the tolerance, but the test set cannot tell them apart
    noisy = verdict([row("scratch", None, 0.100, 0.006), row("adjacent", 1.4, 0.090, 0.006)], "cl")
    assert "within 2 standard errors (0.0170)" in noisy and noisy.endswith("stacking pays here")
    precise = verdict([row("scratch", None, 0.100, 0.002), row("adjacent", 1.4, 0.090, 0.002)], "cl")
    assert "beyond 2 standard errors (0.0057)" in precise and "does NOT pay at comparable accuracy" in precise
