"""distrec.metrics: CTR and ranking metrics against sklearn / hand-computed values, and exactness
over 2 gloo ranks (the distributed result must equal the full-data value, not a per-rank mean)."""

import json
import math
import socket
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import log_loss, roc_auc_score
from torchmetrics.classification import BinaryAUROC

from distrec.metrics import (
    CtrMetricAccumulator,
    RankingMetricAccumulator,
    gather_tensors,
    ranking_metrics_sums,
    target_ranks,
)

RANK_SIZES = (37, 63)


def _ctr_data(n=100, seed=0):
    """Probabilities rounded to 2 decimals (many ties); rows < 37 are far more informative."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    noise = torch.rand(n, generator=g)
    signal = torch.where(torch.arange(n) < RANK_SIZES[0], 0.6, 0.05)
    preds = ((labels * signal + noise * (1 - signal)).clamp(0.01, 0.99) * 100).round() / 100
    groups = torch.randint(0, 8, (n,), generator=g)
    return preds, labels, groups


def _reference_gauc(preds, labels, groups):
    total, weight = 0.0, 0
    for gid in np.unique(groups):
        m = groups == gid
        if len(np.unique(labels[m])) < 2:
            continue
        total += roc_auc_score(labels[m], preds[m]) * m.sum()
        weight += m.sum()
    return total / weight


def _ranking_data(n=100, n_items=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    scores = (torch.rand(n, n_items, generator=g) * 10).round()  # integer scores: many ties
    targets = torch.randint(0, n_items, (n,), generator=g)
    # The first rank's rows score their target higher, so per-rank means differ from the global one.
    boost = torch.where(torch.arange(n) < RANK_SIZES[0], 6.0, 0.0)
    scores[torch.arange(n), targets] += boost
    return scores, targets


def test_auc_and_logloss_match_sklearn_with_ties_and_padding():
    preds, labels, groups = _ctr_data()
    acc = CtrMetricAccumulator()
    for sl in (slice(0, 30), slice(30, 100)):
        # padding rows with adversarial values: they would change every metric if counted
        pad_preds = torch.cat([preds[sl], torch.full((5,), 0.999)])
        pad_labels = torch.cat([labels[sl], torch.zeros(5, dtype=labels.dtype)])
        weights = torch.cat([torch.ones(sl.stop - sl.start), torch.zeros(5)])
        acc.update(pad_preds, pad_labels, weights=weights)
    out = acc.compute(names=("auc", "logloss"))

    assert len(torch.unique(preds)) < len(preds)  # ties really occur
    assert out["num_rows"] == 100
    assert out["auc"] == pytest.approx(roc_auc_score(labels.numpy(), preds.numpy()), abs=1e-12)
    expected_logloss = log_loss(labels.numpy(), preds.double().numpy())
    assert out["logloss"] == pytest.approx(expected_logloss, abs=1e-12)
    assert set(out) == {"auc", "logloss", "num_rows"}


def test_gauc_matches_per_group_sklearn_reference():
    preds, labels, groups = _ctr_data(n=200, seed=3)
    groups[groups == 7] = 1000  # sparse group ids
    labels[groups == 1000] = 1  # a single-class group: must be skipped
    acc = CtrMetricAccumulator()
    acc.update(preds[:120], labels[:120], groups=groups[:120])
    acc.update(preds[120:], labels[120:], groups=groups[120:])
    gauc = acc.compute(names=("gauc",))["gauc"]

    p, y, g = preds.numpy(), labels.numpy(), groups.numpy()
    assert gauc == pytest.approx(_reference_gauc(p, y, g), abs=1e-12)
    assert gauc != pytest.approx(roc_auc_score(y, p), abs=1e-6)


def test_one_class_gives_nan_auc_and_unknown_name_raises():
    acc = CtrMetricAccumulator()
    acc.update(torch.tensor([0.2, 0.2, 0.7]), torch.ones(3), groups=torch.tensor([1, 1, 2]))
    out = acc.compute()
    assert math.isnan(out["auc"]) and math.isnan(out["gauc"])
    assert out["logloss"] == pytest.approx(log_loss([1, 1, 1], [0.2, 0.2, 0.7], labels=[0, 1]))

    with pytest.raises(ValueError, match=r"'acc'.*'auc', 'gauc', 'logloss'"):
        acc.compute(names=("auc", "acc"))
    assert math.isnan(CtrMetricAccumulator().compute()["auc"])  # no rows at all


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="0 or 1"):
        CtrMetricAccumulator().update(torch.tensor([0.5]), torch.tensor([2.0]))
    acc = CtrMetricAccumulator(max_rows=10)
    acc.update(torch.rand(11), torch.randint(0, 2, (11,)))
    assert acc.compute(names=("logloss",))["num_rows"] == 11  # no gather needed
    with pytest.raises(ValueError, match="binned=True"):
        acc.compute(names=("auc",))
    with pytest.raises(ValueError, match="gauc"):
        CtrMetricAccumulator(binned=True).compute(names=("gauc",))


def test_binned_auc_matches_torchmetrics_thresholds():
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 2, (5000,), generator=g)
    preds = (torch.rand(5000, generator=g) + 0.3 * labels).clamp(1e-3, 1 - 1e-3)
    acc = CtrMetricAccumulator(binned=True)
    acc.update(preds[:2000], labels[:2000])
    acc.update(preds[2000:], labels[2000:])
    binned = acc.compute(names=("auc", "logloss"))

    reference = BinaryAUROC(thresholds=10_000)
    reference.update(preds, labels)
    assert binned["auc"] == pytest.approx(float(reference.compute()), abs=1e-5)
    assert binned["auc"] == pytest.approx(roc_auc_score(labels, preds), abs=1e-3)
    assert binned["logloss"] == pytest.approx(log_loss(labels, preds.double()), abs=1e-12)


SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.5, 0.3, 0.7, 0.2],  # target 2: 0.9 and 0.7 are higher -> rank 2
        [0.2, 0.8, 0.1, 0.4, 0.3, 0.6],  # target 1: highest -> rank 0
        [0.5, 0.5, 0.9, 0.5, 0.8, 0.7],  # target 0: 3 higher + 2 ties (pessimistic) -> rank 5
    ]
)
TARGETS = torch.tensor([2, 1, 0])


def test_ranking_metrics_match_hand_computed_values():
    assert target_ranks(SCORES, TARGETS).tolist() == [2, 0, 5]
    sums = ranking_metrics_sums(SCORES, TARGETS, ks=(1, 3, 6))
    expected = {  # ranks 2, 0, 5
        "hr@1": 1,
        "mrr@1": 1,
        "ndcg@1": 1,
        "hr@3": 2,
        "mrr@3": 1 / 3 + 1,
        "ndcg@3": 1 / math.log2(4) + 1,
        "hr@6": 3,
        "mrr@6": 1 / 3 + 1 + 1 / 6,
        "ndcg@6": 1 / math.log2(4) + 1 + 1 / math.log2(7),
        "mrr@1_sq": 1,
        "mrr@3_sq": 1 / 9 + 1,
        "mrr@6_sq": 1 / 9 + 1 + 1 / 36,
        "count": 3,
    }
    assert set(sums) == set(expected)
    for name, value in expected.items():
        assert float(sums[name]) == pytest.approx(value, abs=1e-12), name

    acc = RankingMetricAccumulator(ks=(3,))
    acc.update(SCORES[:2], TARGETS[:2])
    acc.update(SCORES[2:], TARGETS[2:])
    out = acc.compute()
    reciprocal = np.array([1 / 3, 1, 0])  # ranks 2, 0, 5: outside the top 3 counts 0
    se = reciprocal.std(ddof=0) / math.sqrt(3)
    assert out == pytest.approx({"hr@3": 2 / 3, "mrr@3": 4 / 9, "ndcg@3": 0.5, "mrr@3_se": se, "num_rows": 3})


def test_ranking_exclude_and_padding():
    exclude = torch.zeros_like(SCORES, dtype=torch.bool)
    exclude[0, 0] = True  # drop 0.9 from row 0: rank 2 -> 1
    exclude[1, 1] = True  # the target itself is always ranked
    assert target_ranks(SCORES, TARGETS, exclude).tolist() == [1, 0, 5]
    weights = torch.tensor([1, 1, 0])
    sums = ranking_metrics_sums(SCORES, TARGETS, ks=(2,), exclude=exclude, weights=weights)
    assert float(sums["count"]) == 2
    assert float(sums["mrr@2"]) == pytest.approx(1 / 2 + 1)
    assert target_ranks(torch.ones(2, 4), torch.tensor([0, 3])).tolist() == [3, 3]  # constant model


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, out_dir):
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=60),
    )
    try:
        lo = sum(RANK_SIZES[:rank])
        mine = slice(lo, lo + RANK_SIZES[rank])
        preds, labels, groups = (t[mine] for t in _ctr_data())
        ctr = CtrMetricAccumulator()
        half = len(preds) // 2
        ctr.update(preds[:half], labels[:half], groups=groups[:half])
        ctr.update(preds[half:], labels[half:], groups=groups[half:])
        if rank == 0:  # padding rows that keep ranks in step must not count
            zeros = torch.zeros(4, dtype=torch.int64)
            ctr.update(torch.full((4,), 0.99), zeros, weights=zeros, groups=zeros)
        result = ctr.compute()

        binned = CtrMetricAccumulator(binned=True)
        binned.update(preds, labels)
        result["binned_auc"] = binned.compute(names=("auc",))["auc"]

        scores, targets = (t[mine] for t in _ranking_data())
        ranking = RankingMetricAccumulator(ks=(5, 10))
        ranking.update(scores, targets)
        result["ranking"] = ranking.compute()

        # [N, 2] rows of different counts per rank, gathered in rank order
        rows = torch.arange(2 * (rank + 1)).reshape(-1, 2) + 100 * rank
        result["gathered"] = gather_tensors(rows).tolist()
        result["gathered_bool"] = gather_tensors(torch.tensor([True] * (rank + 1))).tolist()
        (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _mean_of_slices(fn):
    bounds = np.cumsum((0,) + RANK_SIZES)
    return np.mean([fn(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])])


def test_two_gloo_ranks_give_full_data_metrics_not_per_rank_means(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]
    res = results[0]

    preds, labels, groups = (t.numpy() for t in _ctr_data())
    preds = preds.astype(np.float64)
    full_auc = roc_auc_score(labels, preds)
    assert res["num_rows"] == sum(RANK_SIZES)
    assert res["auc"] == pytest.approx(full_auc, abs=1e-12)
    assert res["logloss"] == pytest.approx(log_loss(labels, preds), abs=1e-12)
    assert res["gauc"] == pytest.approx(_reference_gauc(preds, labels, groups), abs=1e-12)
    assert res["binned_auc"] == pytest.approx(full_auc, abs=1e-3)
    per_rank_mean = _mean_of_slices(lambda s: roc_auc_score(labels[s], preds[s]))
    assert abs(per_rank_mean - full_auc) > 0.02

    scores, targets = _ranking_data()
    full = ranking_metrics_sums(scores, targets, ks=(5, 10))
    ranking = res.pop("ranking")
    assert ranking["num_rows"] == sum(RANK_SIZES)
    for name in ("hr@5", "mrr@5", "ndcg@5", "hr@10", "mrr@10", "ndcg@10"):
        assert ranking[name] == pytest.approx(float(full[name] / full["count"]), abs=1e-12), name
    n = float(full["count"])
    mean, mean_sq = float(full["mrr@5"]) / n, float(full["mrr@5_sq"]) / n
    assert ranking["mrr@5_se"] == pytest.approx(math.sqrt((mean_sq - mean**2) / n), abs=1e-12)
    ndcg_per_rank_mean = _mean_of_slices(
        lambda s: float(ranking_metrics_sums(scores[s], targets[s])["ndcg@10"]) / (s.stop - s.start)
    )
    assert abs(ndcg_per_rank_mean - ranking["ndcg@10"]) > 0.02

    assert res["gathered"] == [[0, 1], [100, 101], [102, 103]]
    assert res["gathered_bool"] == [True, True, True]


def test_gather_is_identity_without_process_group():
    t = torch.arange(5)
    assert gather_tensors(t) is t
