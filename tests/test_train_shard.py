"""A worker's training data kept in memory after the first epoch (lmindexer.train.shard), on a real Ray Data
iterator: every row once per epoch, a new order every epoch, the same batches' shapes and types as streaming."""

import numpy as np
import ray.data
import torch

from lmindexer.paths import RunContext
from lmindexer.train.shard import CachedShard


def rows_of(batches) -> list:
    return [int(r) for b in batches for r in b["row"]]


def source(n: int = 50):
    return ray.data.from_items([{"row": i, "x": np.array([i, 2 * i], dtype=np.int32)} for i in range(n)]).iterator()


def epoch(shard, seed: int, drop_last: bool = True) -> list:
    return list(
        shard.iter_torch_batches(
            batch_size=8, drop_last=drop_last, local_shuffle_buffer_size=64, local_shuffle_seed=seed
        )
    )


def test_first_epoch_streams_and_keeps_every_row_later_epochs_reshuffle_in_memory(ray_session):
    shard = CachedShard(source(), limit_mb=1)
    first = epoch(shard, 0)
    assert [len(b["row"]) for b in first] == [8] * 6  # drop_last as Ray Data's own: 48 of 50 rows
    assert shard.in_memory  # the 2 rows the first epoch dropped are kept as well
    assert sorted(shard.columns["row"].tolist()) == list(range(50))
    shard.settle(True)
    second, third = epoch(shard, 1), epoch(shard, 2)
    for batches in (second, third):
        assert [len(b["row"]) for b in batches] == [8] * 6
        assert len(set(rows_of(batches))) == 48
        assert batches[0]["x"].dtype == first[0]["x"].dtype and batches[0]["row"].dtype == first[0]["row"].dtype
        assert all(torch.equal(b["x"][:, 1], 2 * b["row"].to(b["x"].dtype)) for b in batches)  # rows stay whole
    assert rows_of(second) != rows_of(third)
    assert sorted(rows_of(epoch(shard, 3, drop_last=False))) == list(range(50))
    assert rows_of(epoch(shard, 4)) == rows_of(epoch(shard, 4))  # seeded
    in_order = list(shard.iter_batches(batch_size=16))
    assert [len(b["row"]) for b in in_order] == [16, 16, 16, 2] and sorted(rows_of(in_order)) == list(range(50))


def test_a_share_over_the_limit_or_a_no_vote_streams_every_epoch(ray_session):
    small = CachedShard(source(), limit_mb=100 / 2**20)  # 100 bytes: the first batch already exceeds it
    assert len(rows_of(epoch(small, 0))) == 48 and not small.in_memory
    small.settle(False)
    assert len(rows_of(epoch(small, 1))) == 48 and not small.in_memory
    outvoted = CachedShard(source(), limit_mb=1)
    list(outvoted.iter_batches(batch_size=16))
    assert outvoted.in_memory
    outvoted.settle(False)  # another worker's share did not fit: this one streams too
    assert not outvoted.in_memory and len(rows_of(outvoted.iter_batches(batch_size=16))) == 50
    never = CachedShard(source(), limit_mb=0)
    assert never.settled and len(rows_of(epoch(never, 0))) == 48 and not never.in_memory


def test_small_training_data_is_split_in_memory_as_ray_train_splits_a_dataset(ray_session):
    """At most ray.in_process_rows rows skip Ray Data: each worker takes its equal share of a seeded permutation
    from the object store, served from memory from the first epoch; more rows stay a Ray Dataset."""
    from lmindexer.config import load_config
    from lmindexer.raydata import MemoryRows, train_rows

    x = np.arange(50, dtype=np.int32) * 3
    rows = train_rows(RunContext.of(load_config(overrides=["ray.in_process_rows=50"])), x=x)
    assert isinstance(rows, MemoryRows)
    shares = [rows.share(rank, 3) for rank in range(3)]
    assert [len(s["row"]) for s in shares] == [16] * 3  # 50 // 3 each: every worker takes as many steps
    assert len(set(np.concatenate([s["row"] for s in shares]).tolist())) == 48
    assert all((s["x"] == 3 * s["row"]).all() for s in shares)  # rows stay whole
    assert rows.share(1, 3)["row"].tolist() == shares[1]["row"].tolist()  # seeded: a restarted worker gets the same
    shard = CachedShard.of_columns(shares[0])
    assert shard.in_memory and shard.settled
    assert sorted(rows_of(epoch(shard, 0, drop_last=False))) == sorted(shares[0]["row"].tolist())
    assert rows_of(epoch(shard, 1)) != rows_of(epoch(shard, 2))
    assert isinstance(
        train_rows(RunContext.of(load_config(overrides=["ray.in_process_rows=49"])), x=x), ray.data.Dataset
    )
