"""Amazon Beauty: a one-pass ID generator for recommendation, in a plain loop, against the pipeline's generator.

The pipeline's rec generator (TIGER-style) trains one example per history prefix: 131,413 examples, each encoding
up to 20 items. Here a T5 decoder reads a user's items as ID tokens, oldest first, and predicts every next item's
tokens in one causal pass (as SASRec trains): one sequence per user (22,363), the same targets (every item but the
first of the items before the validation target). Its cross-attention reads one all-zero memory vector, a no-op:
the model is the decoder alone. Decoding: the test history as the decoder's prefix, then a beam search under the ID
trie (the project's `TrieLogitsProcessor`, shifted past the prefix), users grouped by history length so no row is
padded. Same IDs, split, test users and metrics as bench/full_generators.py's Beauty rows, which are printed beside
it with the reference methods (from runs/bench-full-generators.json and runs/bench-reference.json).

    .venv/bin/python bench/rec_one_pass.py                        # d128 decoder, at most 40 epochs, 2 threads
    .venv/bin/python bench/rec_one_pass.py --epochs 2 --eval-users 500   # a quick check

Writes runs/bench-rec-one-pass.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from shared_data import DATA  # noqa: E402
from transformers import LogitsProcessorList  # noqa: E402
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402

from lmindexer.data.generator_data import read_sequences  # noqa: E402
from lmindexer.downstream.evaluate import summarise  # noqa: E402
from lmindexer.downstream.splits import sample, split_sequences  # noqa: E402
from lmindexer.downstream.trie import TrieLogitsProcessor, build_trie  # noqa: E402
from lmindexer.ids.table import read_id_table  # noqa: E402
from lmindexer.models.backbone import build_t5  # noqa: E402

SEQUENCES = DATA / "amazon_beauty" / "original" / "CIKM2020-S3Rec" / "data" / "Beauty.txt"
IDS = ROOT / "runs" / "bench-beauty-ids-minilm" / "ids"
OUT = ROOT / "runs" / "bench-rec-one-pass.json"


class ShiftedTrie(TrieLogitsProcessor):
    """The ID trie applied to the tokens generated after a decoder prefix of `offset` tokens (start token included)."""

    def __init__(self, trie: dict, offset: int):
        super().__init__(trie, eos_token_id=1, pad_token_id=0)
        self.offset = offset

    def __call__(self, input_ids, scores):
        return super().__call__(torch.cat([input_ids[:, :1], input_ids[:, self.offset :]], 1), scores)


def item_tokens(table) -> np.ndarray:
    """[items, T+1] token ids: code c at position t is 2 + t*K + c, the suffix s is 2 + T*K + s (0: pad, 1: eos)."""
    T, K = table.codes.shape[1], table.codebook_size
    return np.concatenate([2 + np.arange(T) * K + table.codes, (2 + T * K + table.suffix)[:, None]], 1)


def windows(items: list, size: int) -> list:
    """Windows of at most `size` items, ending at the last item and every size-1 items before it, so that every item
    but the first is predicted exactly once (the first item of a window is context only)."""
    out, end = [], len(items)
    while end > 1:
        out.append(items[max(0, end - size) : end])
        end -= size - 1
    return out


def memory(n: int, d: int) -> tuple:
    return BaseModelOutput(last_hidden_state=torch.zeros(n, 1, d)), torch.ones(n, 1, dtype=torch.long)


def train_batch(seqs: list, tokens: np.ndarray, width: int) -> dict:
    """Decoder inputs and labels for sequences of item rows: every item's tokens are predicted but the first's."""
    n, L = len(seqs), max(len(s) for s in seqs) * width
    labels = np.full((n, L), -100, dtype=np.int64)
    inputs = np.zeros((n, L), dtype=np.int64)
    for i, s in enumerate(seqs):
        flat = tokens[s].reshape(-1)
        labels[i, width : len(flat)] = flat[width:]
        inputs[i, 1 : len(flat)] = flat[:-1]
    return {"decoder_input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}


@torch.no_grad()
def decode(model, histories: list, tokens: np.ndarray, trie: dict, beams: int, batch: int = 64) -> list:
    """Row lists of the `beams` best next items of each history (its newest items as the decoder's prefix)."""
    model.eval()
    width, d = tokens.shape[1], model.config.d_model
    code_row = {tuple(t): r for r, t in enumerate(tokens.tolist())}
    out: list = [None] * len(histories)
    by_len: dict = {}
    for i, h in enumerate(histories):
        by_len.setdefault(len(h), []).append(i)
    for n, rows in sorted(by_len.items()):
        processor = LogitsProcessorList([ShiftedTrie(trie, 1 + n * width)])
        for j in range(0, len(rows), batch):
            part = rows[j : j + batch]
            prefix = np.zeros((len(part), 1 + n * width), dtype=np.int64)
            prefix[:, 1:] = tokens[np.array([histories[i] for i in part])].reshape(len(part), -1)
            enc, mask = memory(len(part), d)
            gen = model.generate(
                encoder_outputs=enc,
                attention_mask=mask,
                decoder_input_ids=torch.from_numpy(prefix),
                num_beams=beams,
                num_return_sequences=beams,
                max_new_tokens=width + 1,
                logits_processor=processor,
                do_sample=False,
                early_stopping=True,
            )
            ids = gen[:, 1 + n * width : 1 + (n + 1) * width].view(len(part), beams, width).tolist()
            for i, cand in zip(part, ids):
                out[i] = [code_row.get(tuple(c)) for c in cand]
    model.train()
    return out


def recall_at(ranked: list, targets: list, k: int) -> float:
    return float(np.mean([t in r[:k] for r, t in zip(ranked, targets)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ids", default=str(IDS))
    p.add_argument("--preset", default="d128")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--max-history", type=int, default=20)
    p.add_argument("--beams", type=int, default=10)
    p.add_argument("--val-users", type=int, default=2000)
    p.add_argument("--eval-users", type=int, default=0, help="test users (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    table = read_id_table(args.ids)
    tokens = item_tokens(table)
    width, H = tokens.shape[1], args.max_history
    trie = build_trie(tokens)
    split, skipped = split_sequences(read_sequences(str(SEQUENCES)), table.row)
    row = table.row
    # the items before each user's validation target, in windows of H + 1 items: every item but the first is a target
    train = [w for _, h, _ in split["valid"] for w in windows([row[i] for i in h], H + 1)]
    val = sample(split["valid"], args.val_users, args.seed)
    test = sample(split["test"], args.eval_users, args.seed)
    val_hist, val_target = [[row[i] for i in h[-H:]] for _, h, _ in val], [row[t] for _, _, t in val]
    test_hist, test_target = [[row[i] for i in h[-H:]] for _, h, _ in test], [row[t] for _, _, t in test]
    targets = sum(len(s) - 1 for s in train)
    print(
        f"{len(train)} training sequences ({targets} next-item targets), {len(val)} validation and {len(test)} test "
        f"users, {len(tokens)} items, ID width {width}, vocabulary {int(tokens.max()) + 1}; skipped {dict(skipped)}",
        flush=True,
    )

    model = build_t5(args.preset, int(tokens.max()) + 1, args.dropout)
    model.train()
    steps = args.epochs * -(-len(train) // args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm)))
    )
    rng = np.random.default_rng(args.seed)
    curve, best, best_state, bad, start = [], -1.0, None, 0, time.time()
    for epoch in range(1, args.epochs + 1):
        t0, losses = time.time(), []
        order = rng.permutation(len(train))
        for j in range(0, len(order), args.batch):
            b = train_batch([train[i] for i in order[j : j + args.batch]], tokens, width)
            enc, mask = memory(len(b["labels"]), model.config.d_model)
            loss = model(encoder_outputs=enc, attention_mask=mask, **b).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        train_s = time.time() - t0
        r10 = recall_at(decode(model, val_hist, tokens, trie, args.beams), val_target, 10)
        curve.append(r10)
        print(
            f"epoch {epoch}: loss {np.mean(losses):.4f}, validation recall@10 {r10:.4f} "
            f"(train {train_s:.0f}s, validation {time.time() - t0 - train_s:.0f}s)",
            flush=True,
        )
        if r10 > best:
            best, bad = r10, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= args.patience:
                break
    train_seconds = time.time() - start
    model.load_state_dict(best_state)
    t0 = time.time()
    ranked = decode(model, test_hist, tokens, trie, args.beams)
    eval_seconds = time.time() - t0
    doc = table.doc_ids
    metrics, intervals = summarise(
        [[doc[r] for r in rs if r is not None] for rs in ranked], [{doc[t]: 1} for t in test_target], [5, 10]
    )
    result = {
        "settings": vars(args),
        "training_sequences": len(train),
        "targets": targets,
        "test_users": len(test),
        "epochs_run": len(curve),
        "curve": curve,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "metrics": metrics,
        "intervals": intervals,
    }
    OUT.write_text(json.dumps(result, indent=2))
    print(f"\none-pass decoder ({len(curve)} epochs, {train_seconds:.0f}s training, {eval_seconds:.0f}s test):")
    for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        print(f"  {k}: {metrics[k]:.4f} [{intervals[k][0]:.4f}, {intervals[k][1]:.4f}]")
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
