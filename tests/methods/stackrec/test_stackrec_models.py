"""NextItNet/SASRec causality, the left-padded layout, sampled softmax and the ranking metrics."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from distrec.methods.stackrec.config import ModelConfig
from distrec.metrics import RankingMetricAccumulator
from distrec.models.nextitnet import NextItNetBody
from distrec.models.sampled_softmax import (
    SampledSoftmaxHead,
    num_negatives,
    sampled_softmax_loss,
    shared_negatives,
)
from distrec.models.seqrec import SequenceDenseNet, left_padded


@pytest.mark.parametrize("arch", ["nextitnet", "sasrec"])
def test_outputs_at_t_ignore_items_after_t(arch):
    torch.manual_seed(0)
    net = SequenceDenseNet(OmegaConf.structured(ModelConfig(arch=arch, blocks=3, embedding_dim=8, heads=2)), 50, 20)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "alpha" in name:
                p.fill_(1.0)  # live residual branches (they start at 0)
    emb = torch.randn(2, 19, 8)
    mask = torch.ones(2, 19, dtype=torch.bool)
    base = net.hidden(emb, mask)
    for t in (0, 7, 17):
        changed = emb.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        out = net.hidden(changed, mask)
        assert torch.allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-6)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


def test_nextitnet_receptive_field_formula():
    torch.manual_seed(0)
    body = NextItNetBody(2, 4, 3, [1, 4])
    with torch.no_grad():
        for b in body.blocks:
            b.alpha.fill_(1.0)
    rf = NextItNetBody.receptive_field(2, 3, [1, 4])
    assert rf == 31
    x = torch.randn(1, 40, 4)
    y = x.clone()
    y[0, 39 - rf] += 1.0  # just outside the last position's field
    assert torch.equal(body(x)[0, -1], body(y)[0, -1])
    y[0, 39 - rf + 1] += 1.0  # just inside
    assert not torch.equal(body(x)[0, -1], body(y)[0, -1])


def test_left_padded_puts_each_row_at_the_end():
    values = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    lengths = torch.tensor([3, 0, 4])
    out = left_padded(values, lengths, 3)
    assert out.tolist() == [[1, 2, 3], [0, 0, 0], [5, 6, 7]]  # the 4-long row keeps its last 3
    emb = torch.arange(14.0).reshape(7, 2)
    assert torch.equal(left_padded(emb, lengths, 4)[2], emb[3:])


def test_sampled_softmax_matches_the_direct_formula_and_masks_accidental_hits():
    torch.manual_seed(0)
    head = SampledSoftmaxHead(dim=4, num_items=10, sample_fraction=0.4)
    hidden, targets = torch.randn(3, 4), torch.tensor([2, 5, 9])
    negatives = torch.tensor([5, 7, 1, 3])
    w, b = head.output.weight, head.output.bias
    expected = []
    for h, t in zip(hidden, targets):
        logits = [h @ w[t] + b[t]] + [h @ w[n] + b[n] for n in negatives if n != t]
        expected.append(-torch.log_softmax(torch.stack(logits), 0)[0])
    got = sampled_softmax_loss(hidden, targets, head.output, negatives)
    assert torch.allclose(got, torch.stack(expected).mean(), atol=1e-6)
    assert num_negatives(10, 0.4) == 4 and num_negatives(1000, 0.2) == 200
    drawn = shared_negatives(1001, 0.2)  # 20 % of items 1..V-1, distinct, never the padding id
    assert len(drawn) == 200 and len(set(drawn.tolist())) == 200 and 1 <= int(drawn.min()) and int(drawn.max()) <= 1000
    scores = head.scores(hidden)
    assert scores.shape == (3, 10) and torch.isinf(scores[:, 0]).all()
    assert torch.allclose(head.full_loss(hidden, targets),
                          torch.nn.functional.cross_entropy(scores, targets), atol=1e-6)


def test_ranking_metrics_match_a_hand_made_ranking():
    # 6 items (0 = padding at -inf); targets ranked 1st, 3rd, 7th of the real items, plus a
    # weight-0 padding row that must not count
    scores = torch.tensor([
        [-math.inf, 0.9, 0.1, 0.2, 0.3, 0.4],   # target 1: rank 0
        [-math.inf, 0.9, 0.8, 0.7, 0.1, 0.2],   # target 3: rank 2
        [-math.inf, 0.9, 0.8, 0.7, 0.6, 0.5],   # target 5: rank 4
        [-math.inf, 0.0, 0.0, 0.0, 0.0, 0.9],   # padding row
    ])
    acc = RankingMetricAccumulator(ks=(1, 3))
    acc.update(scores, torch.tensor([1, 3, 5, 5]), weights=torch.tensor([1.0, 1.0, 1.0, 0.0]))
    got = acc.compute()
    ranks = [0, 2, 4]
    for k in (1, 3):
        hits = [r < k for r in ranks]
        assert got[f"hr@{k}"] == pytest.approx(sum(hits) / 3)
        assert got[f"mrr@{k}"] == pytest.approx(sum(1 / (r + 1) for r, h in zip(ranks, hits) if h) / 3)
        assert got[f"ndcg@{k}"] == pytest.approx(sum(1 / math.log2(r + 2) for r, h in zip(ranks, hits) if h) / 3)
    assert got["num_rows"] == 3


def test_step_time_benchmark_tiny(tmp_path):
    import importlib.util
    import json
    import math

    spec = importlib.util.spec_from_file_location("stackrec_step_time", "benchmarks/stackrec_step_time.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        report = bench.main(["--tiny", "--out-dir", str(tmp_path), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    rows = json.loads((tmp_path / "stackrec_step_time.json").read_text())["results"]
    assert rows == report["results"]
    assert {(r["loss"], r["blocks"]) for r in rows} == {(l, b) for l in ("sampled", "full") for b in (1, 2)}
    assert all(r["step_ms"] > 0 for r in rows)
    by = {(r["loss"], r["blocks"]): r for r in rows}
    assert by[("full", 2)]["vs_deepest"] == 1.0 and by[("sampled", 2)]["vs_deepest"] == 1.0
    # at initialisation the full softmax over 200 items is near ln(200); the sampled one is over fewer
    for blocks in (1, 2):
        assert abs(by[("full", blocks)]["first_loss"] - math.log(200)) < 0.5
        assert by[("sampled", blocks)]["first_loss"] < by[("full", blocks)]["first_loss"]
