"""The corpus tokenizer and preset T5 save and load back through the same from_pretrained path as hub models."""
import torch

from lmindexer.config import ModelConfig
from lmindexer.models.backbone import PRESETS, load_backbone

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
