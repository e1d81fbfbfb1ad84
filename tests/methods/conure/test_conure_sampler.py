"""Conure's BPR negative sampler: ids ranked by training popularity, drawn with the configured
rank distribution; target counts read from a real imported ml-100k item-rec task."""

import glob

import pyarrow.parquet as pq
import pytest
import torch

from distrec.methods.conure.heads import PopularityRankSampler
from distrec.methods.conure.importers.recbole import import_conure_recbole
from distrec.methods.conure.model import TaskSpec
from distrec.methods.conure.tasks import ResolvedTask, target_counts

DRAWS = 400_000


def reference_probabilities(distribution: str, n: int, rho: float) -> torch.Tensor:
    r = torch.arange(n, dtype=torch.float64)
    weights = {
        "exponential_rank": torch.exp(-(r + 1) / (rho * n)),
        "log_uniform_rank": torch.log((r + 2) / (r + 1)),
        "uniform": torch.ones(n, dtype=torch.float64),
    }[distribution]
    return weights / weights.sum()


@pytest.mark.parametrize("distribution", ["exponential_rank", "log_uniform_rank", "uniform"])
def test_sampled_ranks_follow_the_configured_distribution(distribution):
    num_ids, rho = 41, 0.2  # ids 1..40; 0 is padding
    torch.manual_seed(0)
    counts = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(40) * 3])  # a known popularity order
    sampler = PopularityRankSampler(num_ids, distribution, rho)
    sampler.set_counts(counts)
    draws = sampler.sample((DRAWS,), "cpu")
    assert draws.min() >= 1 and draws.max() <= 40
    rank_of_id = torch.empty(num_ids, dtype=torch.long)
    rank_of_id[1:] = torch.argsort(torch.argsort(-counts[1:], stable=True), stable=True)
    observed = torch.bincount(rank_of_id[draws], minlength=40).double() / DRAWS
    expected = reference_probabilities(distribution, 40, rho)
    # 5 standard errors of a multinomial share, per rank
    assert ((observed - expected).abs() <= 5 * (expected * (1 - expected) / DRAWS).sqrt() + 1e-4).all()
    if distribution != "uniform":
        assert draws.eq(int(counts.argmax())).double().mean() == pytest.approx(float(expected[0]), abs=0.01)


def test_before_counts_rank_follows_id_and_wrong_count_length_is_refused():
    sampler = PopularityRankSampler(5, "exponential_rank", 0.3)
    assert sampler.rank_to_id.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="expected 5 counts, got 4"):
        sampler.set_counts(torch.ones(4))
    with pytest.raises(ValueError, match="rho must be > 0"):
        PopularityRankSampler(5, "exponential_rank", 0.0)


def test_target_counts_match_a_direct_count_of_the_train_split(tmp_path, shared_data):
    import_conure_recbole(str(shared_data / "ml-100k"), str(tmp_path), max_len=20, profiles="")
    data = str(tmp_path / "t2_liked_item")
    num = 1 + int(max(pq.read_table(f, columns=["target"]).column(0).to_numpy().max()
                      for f in glob.glob(f"{data}/*/*.parquet")))
    task = ResolvedTask(TaskSpec("t2", "item_rec", num), data, None, 0.5, 1, 1)
    counts = target_counts(task)
    direct = torch.zeros(num, dtype=torch.long)
    for f in glob.glob(f"{data}/train/*.parquet"):
        direct += torch.bincount(torch.from_numpy(pq.read_table(f).column("target").to_numpy()), minlength=num)
    assert torch.equal(counts, direct) and counts.sum() > 1000
    small = ResolvedTask(TaskSpec("t2", "item_rec", 10), data, None, 0.5, 1, 1)
    with pytest.raises(Exception, match=r"column 'target': target ids must be in \[0, 10\)"):
        target_counts(small)


def test_target_l2_adds_the_squared_norms_of_the_rows_a_batch_looks_up():
    from distrec.methods.conure.heads import ItemRecHead

    def head(l2):
        torch.manual_seed(3)
        return ItemRecHead(8, 30, 2, PopularityRankSampler(30, "uniform"), target_l2=l2)

    hidden, targets, weights = torch.randn(5, 8), torch.tensor([1, 4, 9, 9, 29]), torch.ones(5)
    plain_head, regularised_head = head(0.0), head(0.01)
    torch.manual_seed(7)
    plain = plain_head.loss(hidden, targets, weights)
    torch.manual_seed(7)
    negatives = regularised_head.sampler.sample((5, 2), "cpu")
    torch.manual_seed(7)
    regularised = regularised_head.loss(hidden, targets, weights)
    table = regularised_head.targets.weight
    expected = 0.01 * (table[targets].pow(2).sum(-1).mean() + table[negatives].pow(2).sum(-1).mean())
    assert torch.allclose(regularised - plain, expected)
