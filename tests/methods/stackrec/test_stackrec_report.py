"""The StackRec report: the verdict (stacking pays only when it is faster AND its test MRR@5 is
within the tolerance of the from-scratch model's), its sweep (method.variant x seeds) and its table
over seeds (mean ± std, speed-up and test MRR@5 difference paired by seed)."""

import json

import numpy as np
import pytest
from scipy import stats

from distrec.errors import ConfigError
from distrec.experiments.sweep import plan_sweep
from distrec.methods import load_config
from distrec.methods.stackrec.report import (
    MRR_TOLERANCE,
    PLOT,
    variant_results,
    verdict,
    write_report,
)
from distrec.methods.stackrec.scenario import trial_metrics


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


def test_the_shipped_report_configs_sweep_every_variant_over_three_seeds():
    for name in ("smoke", "ml-100k", "ml-100k-cl", "sessions", "synthetic-deep", "cluster-1b"):
        cfg = load_config(f"configs/stackrec/{name}.yaml")
        plan = plan_sweep(cfg)
        assert cfg.sweep.name == f"{cfg.run.name}-report" and len(cfg.sweep.seeds) >= 3
        assert {str(c.method.variant) for c in plan.configs.values()} == {"scratch", "adjacent", "cross"}
        assert plan.trials[plan.baseline_index].point == {"method.variant": "scratch"}
        assert cfg.sweep.max_concurrent == 1  # trials sharing a machine would distort the times compared
    bad = plan_sweep(load_config("configs/stackrec/smoke.yaml", ["sweep.grid.dense.lr=[0.1]"]))
    with pytest.raises(ConfigError, match="sweeps method.variant alone"):
        variant_results([{"point": t.point, "seed": t.seed, "run_dir": "-", "done": False} for t in bad.trials])


def fake_variant(variant, seed, time_s, mrr):
    blocks = [4] if variant == "scratch" else [2, 4]
    return {"variant": variant, "blocks": 4, "time_to_best_s": time_s, "time_to_best_all_stages_s": time_s + 1,
            "eval_s": 2.0, "checkpoint_s": 1.0, "best_valid_mrr@5": mrr + 0.01, "steps": [10] * len(blocks),
            "test": {"mrr@5": mrr, "mrr@5_se": 0.02, "num_rows": 200, "hr@5": 0.3, "ndcg@5": 0.2, "mrr@10": mrr,
                     "hr@10": 0.4, "ndcg@10": 0.25},
            "stages": [{"blocks": b} for b in blocks],
            "curve": [{"train_s": time_s, "step": 10, "stage": 0, "blocks": 4, "mrr@5": mrr}]}


def test_the_table_is_mean_and_std_over_seeds_with_differences_paired_by_seed(tmp_path):
    cfg = load_config("configs/stackrec/smoke.yaml")
    times = {"scratch": [10.0, 12.0, 11.0], "adjacent": [5.0, 4.0, 5.5]}
    mrr = {"scratch": [0.100, 0.110, 0.105], "adjacent": [0.098, 0.107, 0.104]}
    trials = []
    for variant in times:
        for seed in range(3):
            run_dir = tmp_path / f"method.variant={variant}_seed={seed}"
            (run_dir / variant).mkdir(parents=True)
            result = fake_variant(variant, seed, times[variant][seed], mrr[variant][seed])
            (run_dir / variant / "variant.json").write_text(json.dumps(result))
            trials.append({"point": {"method.variant": variant}, "seed": seed, "run_dir": str(run_dir), "done": True})
    trials.append({"point": {"method.variant": "cross"}, "seed": 0, "run_dir": "-", "done": False})  # no result yet
    results = variant_results(trials)
    assert list(results) == ["scratch", "adjacent"] and sorted(results["adjacent"]) == [0, 1, 2]
    report = write_report(cfg, results, str(tmp_path / "report"), "test machine")

    scratch, adjacent = report["variants"]
    assert adjacent["time_to_best_s"] == [pytest.approx(np.mean(times["adjacent"])),
                                          pytest.approx(np.std(times["adjacent"], ddof=1))]
    ratios = np.array(times["scratch"]) / np.array(times["adjacent"])
    assert adjacent["speedup_vs_scratch"] == pytest.approx(ratios.mean())
    assert adjacent["speedup_vs_scratch_std"] == pytest.approx(ratios.std(ddof=1))
    diff = np.array(mrr["adjacent"]) - np.array(mrr["scratch"])
    ci = stats.ttest_rel(mrr["adjacent"], mrr["scratch"]).confidence_interval(0.95)
    d = adjacent["vs_scratch"]
    assert d["n"] == 3 and d["mean"] == pytest.approx(diff.mean()) and d["se"] == pytest.approx(stats.sem(diff))
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert scratch["speedup_vs_scratch"] is None and scratch["vs_scratch"] is None
    # the paired spread across seeds (not the test rows' standard error) is the noise; 2% below is within tolerance
    assert f"beyond 2 standard errors over seeds ({2 * d['se']:.4f})" in report["verdict"]
    assert report["verdict"].endswith("stacking pays here")

    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"| adjacent | 3 | 2→4 | 10+10 | {np.mean(times['adjacent']):.1f} ± " in markdown
    assert f"| {ratios.mean():.2f} ± {ratios.std(ddof=1):.2f}x |" in markdown
    assert f"| adjacent | 3 | {diff.mean():+.4f} ± {stats.sem(diff):.4f} | [{ci.low:+.4f}, {ci.high:+.4f}] |" in markdown
    assert (tmp_path / "report" / PLOT).read_bytes()[:4] == b"\x89PNG"


def test_a_trial_reports_the_variants_figures_flat():
    result = fake_variant("adjacent", 0, 5.0, 0.1)
    metrics = trial_metrics(result)
    assert metrics["test_mrr@5"] == 0.1 and metrics["test_num_rows"] == 200 and metrics["steps"] == 20
    assert metrics["time_to_best_s"] == 5.0 and metrics["best_valid_mrr@5"] == pytest.approx(0.11)
