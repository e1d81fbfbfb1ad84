"""The student's frequency-adaptive item path and history fusion (one process, no training)."""

import torch

from distrec.methods.msd.item_cache import FrequencyAdaptiveCache
from distrec.methods.msd.model import top_k_history
from distrec.methods.msd.student import StudentEncoder, load_tokenizer, tokenize

TEXTS = ["", "Toy Story | 1995 | Animation, Children's, Comedy", "GoldenEye | 1995 | Action, Thriller",
         "Four Rooms | 1995 | Thriller", "Get Shorty | 1995 | Action, Comedy, Drama"]


def test_cached_and_online_paths_give_the_same_vector():
    student = StudentEncoder()
    student.add_lora(4, 8, ["query", "value"])
    with torch.no_grad():  # non-zero LoRA weights: the cache must use the adapted student
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ids, mask = tokenize(load_tokenizer(student.path), TEXTS, 24)
    frequency = torch.tensor([0, 50, 50, 1, 2])
    cache = FrequencyAdaptiveCache(ids, mask, frequency, min_freq=20, refresh_every=10, encode_batch_size=2)
    cache.refresh(student)
    online = cache.online(student, torch.arange(1, 5)).detach()
    torch.testing.assert_close(cache.cache[1:], online, rtol=0, atol=1e-6)
    assert torch.equal(cache.cache[0], torch.zeros(student.dim))
    batch = torch.tensor([[3, 1], [2, 4]])
    looked_up = cache.lookup(student, batch)
    torch.testing.assert_close(looked_up, online[batch - 1], rtol=0, atol=1e-6)
    assert looked_up.requires_grad  # rare ids 3 and 4 were encoded online, with gradients
    assert cache.cached_share(batch.reshape(-1)) == 0.5


def test_top_k_history_picks_the_most_similar_items():
    keys = torch.nn.functional.normalize(torch.tensor(
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2]]), dim=-1)
    keys[0] = 0
    target = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.0, 1.0]]), dim=-1)
    history = torch.tensor([[4, 2, 1, 3], [1, 0, 0, 0]])
    chosen = top_k_history(keys, target, history, k=2)
    scores = keys[history] @ target.unsqueeze(-1)
    expected_row0 = history[0][scores[0, :, 0].topk(2).indices]
    assert chosen[0].tolist() == expected_row0.tolist() == [1, 3]
    assert chosen[1].tolist() == [1, 0]  # one real history item, the rest padding


def test_cache_refreshes_on_schedule_and_before_evaluation_after_training():
    student = StudentEncoder()
    ids, mask = tokenize(load_tokenizer(student.path), TEXTS, 16)
    cache = FrequencyAdaptiveCache(ids, mask, torch.tensor([0, 50, 50, 1, 2]), min_freq=20,
                                   refresh_every=3, encode_batch_size=8)
    refreshes_after = []
    for _ in range(7):
        cache.maybe_refresh(student, training=True)
        refreshes_after.append(cache.refreshes)
    assert refreshes_after == [1, 1, 1, 2, 2, 2, 3]  # steps 0, 3, 6
    cache.maybe_refresh(student, training=False)
    cache.maybe_refresh(student, training=False)
    assert cache.refreshes == 4  # once before evaluation, not again while nothing trained
