"""The corpus tokenizer and preset T5 save and load back through the same from_pretrained path as hub models; the
generator adds its ID tokens to such a model."""
import numpy as np
import pytest
import torch

from lmindexer.config import ModelConfig
from lmindexer.models.backbone import PRESETS, load_backbone
from lmindexer.models.generator import build_generator, load_generator

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
    info = build_generator(str(tmp_path / "t5"), 2, 4, 3, str(tmp_path / "gen"), books, {"task": "rec"})
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
    assert not build_generator(str(tmp_path / "t5"), 2, 4, 3, str(tmp_path / "g2"), torch.randn(2, 4, 7))["codebook_init"]
