"""The corpus tokenizer and preset T5 save and load back through the same from_pretrained path as hub models; the
generator adds its ID tokens to such a model."""

import dataclasses

import numpy as np
import pytest
import torch

from lmindexer.config import ModelConfig, load_config
from lmindexer.models.backbone import PRESETS, load_backbone
from lmindexer.models.codebook import Codebook, code_logits
from lmindexer.models.generator import build_generator, load_generator
from lmindexer.quantizers.codes import IdSpec
from lmindexer.train.engine import forward_precision, silenced_print

TEXTS = [f"product {i} with shade {i % 7} and brand b{i % 5}" for i in range(200)]


def test_tokenizer_has_t5_specials():
    _, tok = load_backbone(ModelConfig(vocab_size=300), TEXTS)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("product 12 with shade 5")["input_ids"]
    assert ids[-1] == 1 and 2 not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "product 12 with shade 5"


def test_saved_model_loads_through_from_pretrained(tmp_path):
    model, tok = load_backbone(ModelConfig(vocab_size=300, preset="tiny"), TEXTS)
    assert model.config.d_model == PRESETS["tiny"][0]
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_backbone(ModelConfig(name_or_path=str(tmp_path)))
    assert tok2("shade 3")["input_ids"] == tok("shade 3")["input_ids"]
    model.eval(), loaded.eval()
    x = torch.tensor([tok("brand b1")["input_ids"]])
    with torch.no_grad():
        a = model(input_ids=x, decoder_input_ids=torch.zeros_like(x[:, :1])).logits
        b = loaded(input_ids=x, decoder_input_ids=torch.zeros_like(x[:, :1])).logits
    assert torch.allclose(a, b)
    assert list(tmp_path.glob("*.safetensors"))


def test_generator_adds_id_tokens_with_codebook_embeddings(tmp_path):
    model, tok = load_backbone(ModelConfig(vocab_size=300, preset="tiny"), TEXTS)
    model.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    books = torch.randn(2, 4, model.config.d_model)
    info = build_generator(str(tmp_path / "t5"), IdSpec(2, 4, 3), str(tmp_path / "gen"), books, {"task": "rec"})
    assert info["codebook_init"] and info["task"] == "rec"
    loaded, tokenizer, vocab, _ = load_generator(str(tmp_path / "gen"))
    emb = loaded.get_input_embeddings().weight
    assert emb.shape[0] >= len(tok) + 2 * 4 + 3
    assert torch.allclose(emb[tokenizer.convert_tokens_to_ids("<id_2_3>")], books[1, 3])
    tokens = vocab.tokens(np.array([[1, 3], [0, 0]]), np.array([2, 0]))
    assert tokenizer.convert_ids_to_tokens(tokens[0].tolist()) == ["<id_1_1>", "<id_2_3>", "<id_s_2>"]
    assert vocab.sids(tokens) == ["1-3-2", "0-0-0"]
    with pytest.raises(ValueError, match="outside"):
        vocab.tokens(np.array([[4, 0]]), np.array([0]))
    # a codebook of another width is ignored (random ID embeddings) rather than forced in
    other = build_generator(str(tmp_path / "t5"), IdSpec(2, 4, 3), str(tmp_path / "g2"), torch.randn(2, 4, 7))
    assert not other["codebook_init"]


def test_id_softmax_puts_all_probability_on_id_tokens_and_eos(tmp_path):
    """generator.id_softmax: the loaded generator's logits are -inf off the ID tokens and eos, its loss is the
    cross-entropy of that restricted softmax (finite, and below the full-vocabulary loss of the same weights)."""
    from lmindexer.models.generator import output_mask

    assert output_mask(torch.tensor([1, 3]), 5).tolist() == [float("-inf"), 0.0, float("-inf"), 0.0, float("-inf")]
    model, tok = load_backbone(ModelConfig(vocab_size=300, preset="tiny"), TEXTS)
    model.save_pretrained(tmp_path / "t5")
    tok.save_pretrained(tmp_path / "t5")
    for name, meta in (("full", {}), ("ids", {"id_softmax": True})):
        build_generator(str(tmp_path / "t5"), IdSpec(2, 4, 3), str(tmp_path / name), meta=meta)
    full, *_ = load_generator(str(tmp_path / "full"))
    ids, tokenizer, vocab, _ = load_generator(str(tmp_path / "ids"))
    ids.load_state_dict(full.state_dict())
    x = torch.tensor([tok("brand b1")["input_ids"]])
    labels = torch.from_numpy(np.append(vocab.tokens(np.array([[1, 3]]), np.array([2])), tokenizer.eos_token_id))[None]
    with torch.no_grad():
        a, b = full(input_ids=x, labels=labels), ids(input_ids=x, labels=labels)
    allowed = set(vocab.table[vocab.table >= 0].tolist()) | {tokenizer.eos_token_id}
    finite = set(torch.isfinite(b.logits[0, 0]).nonzero().view(-1).tolist())
    assert finite == allowed and torch.isfinite(b.loss) and b.loss < a.loss
    assert torch.allclose(b.logits[0, 0, sorted(allowed)], a.logits[0, 0, sorted(allowed)])


def test_code_selection_is_fp32_under_bf16_autocast():
    """Codes picked under bf16 autocast equal the fp32 codes (near-tied codes swap when logits are bf16)."""
    torch.manual_seed(0)
    book = Codebook(256, 768)
    with torch.no_grad():
        book.weight.copy_(torch.randn(1, 768) + 0.01 * torch.randn(256, 768))  # close codes: bf16 would swap them
    h = torch.randn(512, 768)
    for selection in ("dot", "l2"):
        want = book(h, selection=selection)[2]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = book(h, selection=selection)[2]
        assert torch.equal(got, want), selection
        bf16 = code_logits(h.bfloat16(), book.weight.bfloat16(), selection).argmax(-1)
        assert not torch.equal(bf16, want)  # the check can fail: in bf16 the choice does change


def test_ddp_bf16_keeps_fp32_weights_and_small_updates():
    """train.engine=ddp with bf16: the forward runs in autocast, weights and AdamW stay fp32, so 100 steps at lr
    1e-4 move a weight as fp32 training does (a bf16 weight of 0.5 would not move at all)."""

    def run(bf16: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
        x, y = torch.randn(64, 8), torch.randn(64, 1)
        for _ in range(100):
            with forward_precision("ddp", bf16, "cpu"):
                loss = (model(x).float() - y).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
        assert model.weight.dtype == torch.float32
        return model.weight.detach()

    fp32, bf16 = run(False), run(True)
    assert (fp32 - 0.5).abs().max() > 5e-3  # the weights did move
    assert torch.allclose(bf16, fp32, atol=1e-3)


def _regression():
    """A linear regression with every weight at 0.5, its loss as forward(x, y), and its data (classes and functions
    made here travel to Ray workers by value)."""

    class Regression(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(8, 1)
            with torch.no_grad():
                self.w.weight.fill_(0.5)

        def forward(self, x, y):
            return (self.w(x.to(self.w.weight.dtype)).float() - y).pow(2).mean()

    g = torch.Generator().manual_seed(0)
    return Regression, torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g)


@pytest.mark.slow
def test_deepspeed_bf16_saves_and_decodes_the_fp32_master_weights(ray_session, tmp_path):
    """DeepSpeed bf16 keeps bf16 weights in the module and fp32 master weights in its optimizer; what full_weights()
    hands to saving and validation must be the fp32 ones, matching a plain fp32 run (the bf16 copy is off by its
    rounding, ~2e-3 at 0.5), for ZeRO-2 and ZeRO-3 (at stage 0 DeepSpeed hides them: engine.zero_stage keeps a
    single bf16 worker at its configured stage)."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    Regression, x, y = _regression()

    def worker(config: dict) -> None:
        import ray.train

        from lmindexer.config import load_config
        from lmindexer.train.engine import Engine

        found = {}
        for stage in (2, 3):
            cfg = load_config(
                overrides=[
                    "train.engine=deepspeed",
                    "train.precision=bf16",
                    f"train.zero_stage={stage}",
                    "train.grad_clip=0",
                ]
            )
            torch.manual_seed(0)
            engine = Engine(Regression(), cfg.train, lr=1e-4, batch_size=64)
            for _ in range(100):
                engine.step(engine(x=x, y=y))
            with engine.full_weights() as model:
                full = model.w.weight.detach().clone()
            found[stage] = {"full": full, "own_dtype": engine.module.w.weight.dtype}  # bf16 again after the block
            if stage == 2:  # (ZeRO-3 keeps only a shard in the module)
                found[stage]["own"] = engine.module.w.weight.detach().clone()
        if ray.train.get_context().get_world_rank() == 0:
            torch.save(found, config["out"])

    out = tmp_path / "weights.pt"
    TorchTrainer(
        worker,
        train_loop_config={"out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        torch_config=TorchConfig(backend="gloo"),
    ).fit()
    model = Regression()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    for _ in range(100):
        model(x, y).backward()
        opt.step()
        opt.zero_grad()
    want = model.w.weight.detach()
    assert (want - 0.5).abs().max() > 5e-3  # the weights did move
    found = torch.load(out)
    for stage, got in found.items():
        assert got["full"].dtype == torch.float32 and got["own_dtype"] == torch.bfloat16, stage
        assert torch.allclose(got["full"], want, atol=2e-4), (stage, got["full"], want)
    assert not torch.allclose(found[2]["own"].float(), want, atol=2e-4)  # the check can fail: bf16 is off


def test_engine_auto_and_a_single_worker_at_zero_stage_0():
    from lmindexer.train.engine import deepspeed_config, engine_kind, zero_stage

    cfg = load_config(overrides=["train.zero_stage=3"]).train
    assert [zero_stage(cfg, n) for n in (1, 2, 8)] == [0, 3, 3]  # one worker: nothing to shard
    bf16 = load_config(overrides=["train.zero_stage=2", "train.precision=bf16"]).train
    assert zero_stage(bf16, 1) == 2  # stage 0 would hide the fp32 master weights
    auto = load_config(overrides=["train.engine=auto"]).train
    assert engine_kind(auto) == "ddp" and engine_kind(dataclasses.replace(auto, use_gpu=True)) == "deepspeed"
    assert engine_kind(dataclasses.replace(auto, engine="deepspeed")) == "deepspeed"
    assert deepspeed_config(cfg, 16, zero_stage(cfg, 1))["zero_optimization"] == {"stage": 0}


def test_worker_threads_share_the_cores():
    from lmindexer.runtime import worker_threads

    assert worker_threads(0.5, 2, 2) == 1 and worker_threads(0.5, 1, 2) == 2 and worker_threads(0.5, 4, 2) == 1
    assert worker_threads(2, 1, 16) == 2 and worker_threads(3.0, 8, 16) == 3


def test_silenced_print_drops_prints_inside_the_block_only(capsys):
    """DeepSpeed's op-built notice is a print(); Engine runs deepspeed.initialize under silenced_print in quiet mode."""
    with silenced_print():
        print("DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully")
    print("after")
    assert capsys.readouterr().out == "after\n"
