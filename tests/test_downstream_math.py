"""The pure parts of the downstream half: the tensor trie and its decoding, ranking metrics, example builders."""

import math

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from lmindexer.downstream.decode import beam_search, by_length
from lmindexer.downstream.splits import (
    pack,
    retrieval_examples,
    sample,
    sentence_views,
    split_sequences,
    word_views,
)
from lmindexer.downstream.trie import TrieLogitsProcessor, build_trie
from lmindexer.eval.ranking import mean_metrics, query_metrics
from lmindexer.train.loop import length_groups, trim_padding

EOS, PAD = 1, 0


def random_ids(n=12, depth=3, low=3, high=20, seed=0):
    return np.unique(np.random.default_rng(seed).integers(low, high, size=(n, depth)), axis=0)


def test_trie_walks_to_exactly_the_valid_prefixes():
    ids = random_ids(40, 4, high=9)
    proc = TrieLogitsProcessor(build_trie(np.concatenate([ids, ids[:5]])), EOS, PAD)  # duplicates merge
    valid = {tuple(r) for r in ids.tolist()}
    for depth in range(1, 5):
        prefixes = {p[:depth] for p in valid}
        grid = np.array(np.meshgrid(*[np.arange(3, 9)] * depth)).reshape(depth, -1).T
        nodes = proc.nodes(torch.from_numpy(grid))
        assert {tuple(g) for g, n in zip(grid.tolist(), nodes.tolist()) if n >= 0} == prefixes
    # the allowed next tokens after each prefix are exactly its children
    scores = torch.zeros(1, 12)
    for prefix in {p[:2] for p in valid}:
        ids_so_far = torch.tensor([[0, *prefix]])
        allowed = set(torch.isfinite(proc(ids_so_far, scores.clone())[0]).nonzero().flatten().tolist())
        assert allowed == {p[2] for p in valid if p[:2] == prefix}
    closed = proc(torch.tensor([[0, *ids[0]]]), scores.clone())[0]
    assert torch.isfinite(closed).nonzero().flatten().tolist() == [EOS]


def test_trie_rejects_empty_input():
    with pytest.raises(ValueError, match="non-empty"):
        build_trie(np.zeros((0, 3)))


def tiny_t5() -> T5ForConditionalGeneration:
    """A seeded one-layer T5 over a 24-token vocabulary, in eval mode."""
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=24, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8, pad_token_id=PAD, eos_token_id=EOS
    )
    config.decoder_start_token_id = PAD
    return T5ForConditionalGeneration(config).eval()


def test_beam_search_under_the_trie_emits_only_valid_ids_and_reaches_all():
    """Pins the behaviour of the installed transformers' beam search with a custom LogitsProcessor."""
    ids = random_ids()
    model = tiny_t5()
    proc = TrieLogitsProcessor(build_trie(ids), EOS, PAD)
    x = torch.randint(3, 24, (3, 6))
    out = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        num_beams=len(ids),
        num_return_sequences=len(ids),
        max_new_tokens=4,
        do_sample=False,
        early_stopping=True,
        logits_processor=LogitsProcessorList([proc]),
    )
    valid = {tuple(r) for r in ids.tolist()}
    for q in range(3):
        rows = out[q * len(ids) : (q + 1) * len(ids)]
        assert (rows[:, 4] == EOS).all()
        assert {tuple(r[1:4]) for r in rows.tolist()} == valid  # every ID once: all reachable, none invalid


def test_trie_of_a_million_ids_is_compact():
    ids = np.random.default_rng(0).integers(0, 256, size=(1_000_000, 4))
    trie = build_trie(ids)
    # one node per distinct prefix of each length (a prefix as one integer: np.unique over rows is 5x slower)
    prefixes = sum(len(np.unique(ids[:, :k] @ (256 ** np.arange(k - 1, -1, -1)))) for k in (1, 2, 3, 4))
    assert len(trie["child"]) == prefixes


def test_ranking_metrics_against_hand_computed_values():
    ranked = ["a", "x", "b", "y", "c"]
    rel = {"a": 2, "b": 1, "c": 1, "z": 3}  # z is never retrieved
    m = query_metrics(ranked, rel, [1, 3, 5])
    assert m["recall@1"] == 0.25 and m["recall@3"] == 0.5 and m["recall@5"] == 0.75
    assert m["hit@1"] == 1.0 and m["mrr@5"] == 1.0
    dcg3 = 2 + 1 / math.log2(4)
    idcg3 = 3 + 2 / math.log2(3) + 1 / math.log2(4)  # the ideal list uses all relevant documents, z included
    assert m["ndcg@3"] == pytest.approx(dcg3 / idcg3)
    assert m["ndcg_binary@3"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3) + 0.5))
    late = query_metrics(["x", "y", "a"], {"a": 1}, [1, 2, 3])
    assert late["mrr@2"] == 0.0 and late["mrr@3"] == pytest.approx(1 / 3) and late["hit@2"] == 0.0
    assert late["ndcg@3"] == pytest.approx(0.5)
    mean = mean_metrics([["a"], ["x"]], [{"a": 1}, {"a": 1}], [1])
    assert mean["recall@1"] == 0.5
    with pytest.raises(ValueError):
        query_metrics(["a"], {"a": 0}, [1])


def test_leave_one_out_split_and_counted_skips():
    split, skipped = split_sequences(
        {"u1": ["a", "b", "c", "d", "e"], "u2": ["a", "q", "b"], "u3": ["a", "b"]}, {"a", "b", "c", "d", "e"}
    )
    assert split["test"] == [("u1", ["a", "b", "c", "d"], "e")]
    assert split["valid"] == [("u1", ["a", "b", "c"], "d")]
    assert split["train"] == [("u1", ["a"], "b"), ("u1", ["a", "b"], "c")]
    assert skipped == {"item_without_id": 1, "user_with_under_3_items": 2}


def test_retrieval_examples_count_what_they_cannot_use():
    ex, skipped = retrieval_examples(
        {"q1": "t", "q2": "t"}, {"q1": {"d1": 1, "dx": 1}, "q2": {"dx": 2}, "q3": {"d1": 1}}, {"d1"}
    )
    assert ex == [("q1", {"d1": 1})]
    assert skipped == {"query_without_text": 1, "relevant_doc_without_id": 2, "query_without_relevant_doc": 1}


def test_pack_cuts_and_closes_with_eos():
    out = pack([[np.array([5, 6]), np.array([7])], [np.arange(10, 20)]], 4, EOS)
    assert out.tolist() == [[5, 6, 7, EOS], [10, 11, 12, EOS]]
    assert sample(list(range(10)), 3, 0) == sorted(sample(list(range(10)), 3, 0)) and sample([1], 0, 0) == [1]


def test_learning_rate_schedule_warms_up_then_decays():
    from lmindexer.train.engine import lr_multiplier

    assert lr_multiplier(0, 100, 0.1, "linear") == pytest.approx(0.1)
    assert lr_multiplier(9, 100, 0.1, "linear") == pytest.approx(1.0)
    assert lr_multiplier(55, 100, 0.1, "linear") == pytest.approx(0.5)
    assert lr_multiplier(99, 100, 0.1, "cosine") < 0.01 and lr_multiplier(55, 100, 0.1, "cosine") == pytest.approx(0.5)
    assert lr_multiplier(50, 100, 0.1, "constant") == 1.0


def test_held_out_queries_are_seeded_and_disjoint():
    from lmindexer.downstream.splits import hold_out

    qrels = {f"q{i}": {"d": 1} for i in range(100)}
    kept, held = hold_out(qrels, 0.1, 500, seed=0)
    assert len(held) == 10 and len(kept) == 90 and not set(kept) & set(held)
    assert hold_out(qrels, 0.1, 500, seed=0)[1] == held and hold_out(qrels, 0.1, 4, seed=0)[1].keys() <= qrels.keys()
    assert len(hold_out(qrels, 0.1, 4, seed=0)[1]) == 4 and hold_out(qrels, 0.1, 0, seed=0) == (qrels, {})


def test_word_views_keep_document_words_in_order():
    text = "a b c d e f g h"
    views = word_views(text, 50, np.random.default_rng(0))
    assert len(views) == 50 and word_views("", 3, np.random.default_rng(0)) == []
    for v in views:
        words = v.split()
        assert 2 <= len(words) <= 6 and words == sorted(words) and set(words) <= set(text.split())
    assert len(set(views)) > 10  # views differ
    assert word_views("x y", 2, np.random.default_rng(0)) == ["x y", "x y"]  # never more words than the text has


def test_sentence_views_are_distinct_long_sentences_of_the_document():
    text = (
        "Title words here. Short one. The first long sentence is here! Is the second long one here? Tiny. "
        "Last long sentence of this text"
    )
    long = {"The first long sentence is here!", "Is the second long one here?", "Last long sentence of this text"}
    views = sentence_views(text, 10, np.random.default_rng(0))
    assert len(views) == len(set(views)) == len(long) and set(views) == long  # each at most once, short ones never
    two = sentence_views(text, 2, np.random.default_rng(1))
    assert len(two) == 2 and set(two) <= long
    assert sentence_views("too short. also short", 3, np.random.default_rng(0)) == []
    assert sentence_views("", 3, np.random.default_rng(0)) == []


def test_length_grouping_keeps_every_full_batch_and_trimming_keeps_the_decoding():
    """Batches of similar length: every row at most once, rows // batch_size batches, each sorted range contiguous;
    and dropping all-padding columns changes neither the encoder's masked result nor the beam search."""
    lengths = torch.tensor([5, 1, 3, 2, 4, 9, 7])
    groups = length_groups(lengths, 2, torch.Generator().manual_seed(0))
    assert len(groups) == 3
    rows = torch.cat(groups).tolist()
    assert len(set(rows)) == 6 and 5 not in rows  # the longest row is the one left over
    assert sorted(sorted(lengths[g].tolist()) for g in groups) == [[1, 2], [3, 4], [5, 7]]
    assert trim_padding(torch.tensor([[5, 1, 0, 0], [3, 4, 1, 0]])).tolist() == [[5, 1, 0], [3, 4, 1]]
    assert trim_padding(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 1)
    assert by_length(np.array([[4, 4, 1], [4, 1, 0], [1, 0, 0]])).tolist() == [2, 1, 0]

    ids = random_ids()
    model = tiny_t5()
    proc = TrieLogitsProcessor(build_trie(ids), EOS, PAD)
    x = torch.randint(3, 24, (3, 6))
    x[:, 4:] = 0
    x[0, 3] = 0
    padded = torch.cat([x, torch.zeros(3, 5, dtype=torch.long)], 1)
    untrimmed = model.generate(
        input_ids=padded,
        attention_mask=(padded != 0).long(),
        num_beams=4,
        num_return_sequences=4,
        max_new_tokens=4,
        do_sample=False,
        early_stopping=True,
        logits_processor=LogitsProcessorList([proc]),
    )[:, 1:4]
    assert torch.equal(beam_search(model, proc, 3, 4, padded, None), untrimmed)
