"""The semantic indexer: a language model that emits one code per ID position, a codebook per position, and a
reconstructor.

Two backbones condition position t on the earlier codes:
- `t5` (encoder-decoder): h_t is the decoder's last state when it is fed [start, <id_1_c1>, ..., <id_{t-1}_c>].
- `encoder` (BERT, MiniLM, MPNet): the input is [T-1 ID slots, document]; the first t-1 slots hold
  <id_1_c1> ... <id_{t-1}_c> and the rest are masked out, and h_t is the mean of the document's token states (the
  original code's MPNet path). The slots are always there, so a token keeps its position whatever t is.
Saved and loaded like a Hugging Face model (`save_pretrained` / `from_pretrained`): the backbone and tokenizer files,
plus indexer.safetensors (codebooks, reconstructor) and indexer.json.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer
from transformers.masking_utils import create_bidirectional_mask

from ..config import ConfigError, IndexerConfig
from ..quantizers.codes import IdSpec
from .backbone import backbone_kind, load_backbone_model
from .codebook import Codebook
from .losses import (
    contrastive_loss,
    neighbourhood_loss,
    prefix_collision_loss,
    prefix_contrastive_loss,
    reconstruction_loss,
    usage_loss,
)
from .reconstructor import Reconstructor, reconstruction_mask
from .row_embedding import RowSubsetEmbedding
from .tokenizer import id_token_names

CONFIG_FILE, WEIGHTS_FILE, STAGES_DIR = "indexer.json", "indexer.safetensors", "stages"
# IndexerConfig fields of a training run, not of the model: left out of indexer.json (they load as defaults)
RUN_ONLY = (
    "output",
    "lr",
    "batch_size",
    "warmup_epochs",
    "continuous_epochs",
    "joint_epochs",
    "epoch_figures",
    "trained_positions",
    "kmeans_iters",
)
PHASES = ("warmup", "continuous", "joint")


def stage_folder(indexer_dir: str, position: int) -> str:
    """Where an indexer folder keeps the backbone that computes code `position` (indexer.staged_encoders)."""
    return os.path.join(indexer_dir, STAGES_DIR, f"position-{position}")


def _dims(config) -> tuple[int, int, int, float]:
    """(width, heads, feed-forward width, dropout) of a T5 or BERT-style config, for the reconstructor."""
    ff = getattr(config, "intermediate_size", None) or config.d_ff
    dropout = getattr(config, "hidden_dropout_prob", None)
    return config.hidden_size, config.num_attention_heads, ff, config.dropout_rate if dropout is None else dropout


class SemanticIndexer(nn.Module):
    def __init__(self, backbone: nn.Module, tokenizer, cfg: IndexerConfig, max_length: int, state: dict | None = None):
        super().__init__()
        self.backbone, self.tokenizer, self.cfg, self.max_length = backbone, tokenizer, cfg, max_length
        self.kind = "t5" if backbone.config.model_type == "t5" else "encoder"
        width, heads, ff, dropout = _dims(backbone.config)
        self.codebooks = nn.ModuleList(
            Codebook(cfg.codebook_size, width, t if cfg.residual else 0) for t in range(cfg.num_positions)
        )
        self.reconstructor = Reconstructor(width, heads, ff, cfg.recon_layers, max_length, dropout)
        self.state = state or {
            "positions_done": 0,
            "history": [],
            "id_token_offset": tokenizer.convert_tokens_to_ids("<id_1_0>"),
        }
        # tokens that are not document text: never reconstruction targets
        self.register_buffer(
            "special_ids",
            torch.tensor(
                sorted(
                    {
                        i
                        for i in (
                            tokenizer.eos_token_id,
                            tokenizer.bos_token_id,
                            tokenizer.cls_token_id,
                            tokenizer.sep_token_id,
                        )
                        if i is not None
                    }
                    or {-1}
                )
            ),
            persistent=False,
        )
        vocab = index = None
        if self.kind == "encoder" and self.state.get("recon_vocab"):  # the head covers the corpus's tokens only
            vocab = torch.tensor(self.state["recon_vocab"], dtype=torch.long)
            index = torch.full((backbone.get_input_embeddings().weight.shape[0],), -1, dtype=torch.long)
            index[vocab] = torch.arange(len(vocab))
        self.register_buffer("recon_vocab", vocab, persistent=False)
        self.register_buffer("recon_index", index, persistent=False)
        self.phase, self.position = "joint", 1
        # staged encoders: the folder this indexer was loaded from, and the stage backbones in memory (not
        # submodules: they never train, and DeepSpeed never sees them)
        self.source_dir: str | None = None
        self._stage_models: dict[int, nn.Module] = {}
        if cfg.frozen_layers:
            layers = getattr(getattr(backbone, "encoder", None), "layer", None)
            if self.kind != "encoder" or layers is None or not hasattr(backbone, "embeddings"):
                raise ConfigError(
                    "indexer.frozen_layers needs model.backbone=encoder with a BERT-style encoder "
                    "(embeddings + encoder.layer, e.g. BERT, MiniLM)"
                )
            if cfg.frozen_layers >= len(layers):
                raise ConfigError(
                    f"indexer.frozen_layers={cfg.frozen_layers} leaves none of the backbone's "
                    f"{len(layers)} layers to train: lower it"
                )

    # ---- construction and persistence -------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, path: str, cfg: IndexerConfig, max_length: int) -> "SemanticIndexer":
        """A fresh indexer on a saved backbone + tokenizer: ID tokens are added to the vocabulary."""
        kind = backbone_kind(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.add_tokens(
            [n for level in id_token_names(cfg.num_positions, cfg.codebook_size) for n in level], special_tokens=True
        )
        model = load_backbone_model(path, kind)
        most = getattr(model.config, "max_position_embeddings", None)
        if kind == "encoder" and most and max_length + cfg.num_positions - 1 > most:
            raise ConfigError(
                f"model.max_length={max_length} plus {cfg.num_positions - 1} ID slots exceeds the "
                f"backbone's {most} positions: lower model.max_length"
            )
        first = tokenizer.convert_tokens_to_ids("<id_1_0>")
        model.resize_token_embeddings(
            max(len(tokenizer), model.get_input_embeddings().weight.shape[0]), mean_resizing=False
        )
        emb = model.get_input_embeddings().weight
        with torch.no_grad():  # distinct rows until codebook t replaces them after position t
            emb[first:] = torch.randn_like(emb[first:]) * emb[:first].std()
        return cls(model, tokenizer, cfg, max_length)

    def save_pretrained(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.full_embeddings()
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        for t in self.state.get("stages", []):
            if t in self._stage_models:
                self._stage_models[t].save_pretrained(stage_folder(path, t))
            elif os.path.abspath(self.source_dir or "") != os.path.abspath(path):
                shutil.copytree(stage_folder(self.source_dir or "", t), stage_folder(path, t), dirs_exist_ok=True)
        own = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("backbone.")}
        save_file(own, os.path.join(path, WEIGHTS_FILE))
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            json.dump(
                {
                    "ids": IdSpec(self.cfg.num_positions, self.cfg.codebook_size).to_json(),
                    "indexer": {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in RUN_ONLY},
                    "backbone": self.kind,
                    "max_length": self.max_length,
                    "state": self.state,
                },
                f,
                indent=2,
            )

    @classmethod
    def from_pretrained(cls, path: str, dropout: float | None = None) -> "SemanticIndexer":
        with open(os.path.join(path, CONFIG_FILE)) as f:
            meta = json.load(f)
        backbone = load_backbone_model(path, meta.get("backbone", "t5"), dropout)
        model = cls(
            backbone,
            AutoTokenizer.from_pretrained(path),
            IndexerConfig(**meta["indexer"]),
            meta["max_length"],
            meta["state"],
        )
        missing, unexpected = model.load_state_dict(load_file(os.path.join(path, WEIGHTS_FILE)), strict=False)
        if unexpected or any(not k.startswith("backbone.") for k in missing):
            raise ValueError(f"{path}: indexer weights do not match (missing {missing}, unexpected {unexpected})")
        model.source_dir = path
        return model.eval()  # as Hugging Face models load: dropout off, so codes match the ID table

    def external_weights(self) -> list[nn.Parameter]:
        """Weights used outside their own module's forward (the tied reconstruction head), which ZeRO-3 must be told
        to gather."""
        return [] if self.kind == "t5" else list(self.backbone.get_input_embeddings().parameters())

    def train_rows_only(self) -> bool:
        """Let only the word-embedding rows that can get a gradient train (the corpus's tokens, which the
        reconstruction head and its context read, and the ID tokens): the same training at a fraction of the
        table's cost, where rows without a gradient do not move (weight decay 0). True when done; an encoder backbone
        with indexer.recon_vocab=corpus only (elsewhere every row can get a gradient)."""
        emb = self.backbone.get_input_embeddings()
        if self.kind != "encoder" or self.recon_vocab is None or isinstance(emb, RowSubsetEmbedding):
            return isinstance(emb, RowSubsetEmbedding)
        offset = self.state["id_token_offset"]
        ids = torch.arange(offset, offset + self.cfg.num_positions * self.cfg.codebook_size)
        self.backbone.set_input_embeddings(RowSubsetEmbedding(emb, torch.cat([self.recon_vocab.cpu(), ids])))
        return True

    def full_embeddings(self) -> None:
        """Undo train_rows_only: the whole table as one nn.Embedding again (before saving)."""
        emb = self.backbone.get_input_embeddings()
        if isinstance(emb, RowSubsetEmbedding):
            self.backbone.set_input_embeddings(emb.to_embedding())

    # ---- phases ------------------------------------------------------------------------------------------
    def set_phase(self, phase: str, position: int) -> None:
        """Choose what trains: warmup = reconstructor only; continuous = all but codebooks; joint adds codebook t."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r} (one of {PHASES})")
        self.phase, self.position = phase, position
        keep_encoder = phase == "warmup" or (
            phase == "joint" and position > 1 and self.cfg.later_positions == "codebook"
        )
        for p in self.backbone.parameters():
            p.requires_grad = not keep_encoder
        for layer in self.frozen():
            for p in layer.parameters():
                p.requires_grad = False
        for t, book in enumerate(self.codebooks, 1):
            for p in book.parameters():
                p.requires_grad = phase == "joint" and t == position

    def set_id_embeddings(self, position: int) -> None:
        """Copy codebook t into the input embeddings of the tokens <id_t_k>, which the backbone reads."""
        start = self.id_tokens(position, torch.zeros(1, dtype=torch.long)).item()
        self.full_embeddings()
        with torch.no_grad():
            self.backbone.get_input_embeddings().weight[start : start + self.cfg.codebook_size] = self.codebooks[
                position - 1
            ].weight

    def id_tokens(self, position, codes: torch.Tensor) -> torch.Tensor:
        return self.state["id_token_offset"] + (position - 1) * self.cfg.codebook_size + codes

    def frozen(self, bb: nn.Module | None = None) -> list[nn.Module]:
        """The encoder layers indexer.frozen_layers keeps frozen (none for T5 or by default), of `bb` or the
        backbone."""
        bb = self.backbone if bb is None else bb
        return list(bb.encoder.layer[: self.cfg.frozen_layers]) if self.cfg.frozen_layers else []

    # ---- staged encoders (indexer.staged_encoders) ----------------------------------------------------------
    def keep_stage(self, position: int) -> None:
        """Record the backbone as it is now as the one that computes code `position` (saved with the indexer as
        stages/position-<t>/), so that training later positions moves no code of this one."""
        self.state["stages"] = sorted(set(self.state.get("stages", [])) | {position})
        self.full_embeddings()
        self._stage_models[position] = copy.deepcopy(self.backbone).eval()

    def stage_backbone(self, position: int) -> nn.Module:
        """The backbone that computes code `position`: its kept stage when there is one, else the backbone."""
        if position not in self.state.get("stages", []):
            return self.backbone
        if position not in self._stage_models:
            folder = stage_folder(self.source_dir or "", position)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"indexer stage {position} is recorded but {folder} is missing")
            self._stage_models[position] = load_backbone_model(folder, self.kind).eval()
        param = next(self.backbone.parameters())
        return self._stage_models[position].to(device=param.device, dtype=param.dtype)

    # ---- forward -----------------------------------------------------------------------------------------
    def lower_states(self, input_ids, attention_mask, bb: nn.Module | None = None) -> torch.Tensor | None:
        """With indexer.frozen_layers=N: the document's states after the N frozen layers, computed once per batch
        without gradients and with the ID slots hidden (so they do not depend on the prefix and every copy of the
        batch shares them); None otherwise."""
        bb = self.backbone if bb is None else bb
        if not self.frozen(bb):
            return None
        slots = self.cfg.num_positions - 1
        ids = torch.cat([input_ids.new_zeros(input_ids.shape[0], slots), input_ids], 1)
        mask = torch.cat([attention_mask.new_zeros(input_ids.shape[0], slots), attention_mask], 1)
        with torch.no_grad():
            hidden = bb.embeddings(input_ids=ids)
            ext = create_bidirectional_mask(config=bb.config, inputs_embeds=hidden, attention_mask=mask)
            for layer in self.frozen(bb):
                hidden = layer(hidden, ext)
        return hidden[:, slots:]

    def states(self, input_ids, attention_mask, prefix, every: bool = False, lower=None, bb=None) -> torch.Tensor:
        """[B, t, d] (every) or [B, 1, d]: h_1..h_t, or h_t alone, for t = prefix length + 1. `lower`: the
        batch's lower_states, when the caller already has them; `bb`: the backbone to run (default: the one that
        trains)."""
        bb = self.backbone if bb is None else bb
        if self.kind == "t5":
            enc = bb.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            start = torch.full(
                (input_ids.shape[0], 1),
                bb.config.decoder_start_token_id,
                device=input_ids.device,
                dtype=torch.long,
            )
            ids = [start] + [self.id_tokens(s + 1, prefix[:, s : s + 1].long()) for s in range(prefix.shape[1])]
            out = bb.decoder(
                input_ids=torch.cat(ids, 1), encoder_hidden_states=enc, encoder_attention_mask=attention_mask
            ).last_hidden_state
            return out if every else out[:, -1:]
        shown = list(range(prefix.shape[1] + 1)) if every else [prefix.shape[1]]
        return self._encoder_states(input_ids, attention_mask, prefix, shown, lower, bb)

    def _encoder_states(self, input_ids, attention_mask, prefix, shown: list[int], lower, bb) -> torch.Tensor:
        """[B, len(shown), d]: the mean document state with the first n ID slots visible, for each n in `shown`,
        in one batched pass."""
        b, slots, device = input_ids.shape[0], self.cfg.num_positions - 1, input_ids.device
        codes = torch.zeros(b, slots, dtype=torch.long, device=device)
        codes[:, : prefix.shape[1]] = prefix.long()
        ids = torch.cat([self.id_tokens(torch.arange(1, slots + 1, device=device), codes), input_ids], 1)
        visible = torch.arange(slots, device=device)[None] < torch.tensor(shown, device=device)[:, None]
        mask = torch.cat([visible.repeat_interleave(b, 0), attention_mask.bool().repeat(len(shown), 1)], 1)
        if self.frozen(bb):  # the slots join the document's frozen lower states at the first trained layer
            lower = self.lower_states(input_ids, attention_mask, bb) if lower is None else lower
            hidden = torch.cat([bb.embeddings(input_ids=ids)[:, :slots], lower], 1)
            hidden = hidden.repeat(len(shown), 1, 1)
            ext = create_bidirectional_mask(config=bb.config, inputs_embeds=hidden, attention_mask=mask.long())
            for layer in bb.encoder.layer[self.cfg.frozen_layers :]:
                hidden = layer(hidden, ext)
            out = hidden
        else:
            out = bb(input_ids=ids.repeat(len(shown), 1), attention_mask=mask.long()).last_hidden_state
        doc = attention_mask[..., None].to(out.dtype).repeat(len(shown), 1, 1)
        pooled = (out[:, slots:] * doc).sum(1) / doc.sum(1).clamp(min=1)
        return pooled.view(len(shown), b, -1).transpose(0, 1)

    def query(self, h: torch.Tensor, prefix: torch.Tensor, position: int) -> torch.Tensor:
        """What codebook `position` scores: h_t, or with indexer.residual h_t centred on its prefix (minus the
        codebook's offsets of the earlier codes; `prefix` holds at least position-1 codes)."""
        return self.codebooks[position - 1](h, prefix=prefix, query=True)

    def code_scores(self, h: torch.Tensor, position: int, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of codebook `position` for the states h (prefix: the earlier codes, needed with residual)."""
        logits, _, _ = self.codebooks[position - 1](h, selection=self.cfg.selection, prefix=prefix)
        return logits

    @torch.no_grad()
    def generate_codes(self, input_ids, attention_mask, positions: int | None = None) -> torch.Tensor:
        """Codes for positions 1..T, each conditioned on the codes chosen before it."""
        prefix = torch.zeros(input_ids.shape[0], 0, dtype=torch.long, device=input_ids.device)
        for t in range(1, (positions or self.state["positions_done"]) + 1):
            h = self.states(input_ids, attention_mask, prefix, bb=self.stage_backbone(t))[:, -1]
            prefix = torch.cat([prefix, self.code_scores(h, t, prefix).argmax(-1, keepdim=True)], 1)
        return prefix

    @torch.no_grad()
    def candidates(self, input_ids, attention_mask, prefix, k: int):
        """(top-k codes, their scores) for the position after `prefix`, best first."""
        h = self.states(input_ids, attention_mask, prefix, bb=self.stage_backbone(prefix.shape[1] + 1))[:, -1]
        scores = self.code_scores(h, prefix.shape[1] + 1, prefix)
        top = scores.topk(min(k, scores.shape[-1]), dim=-1)
        return top.indices, top.values

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of the reconstructor's states: T5's LM head, or a head tied to the encoder's word
        embeddings over the document vocabulary only (codebook vectors copied into the ID tokens' rows would
        otherwise dominate its softmax)."""
        if self.kind == "encoder":
            emb = self.backbone.get_input_embeddings()
            if self.recon_vocab is None:
                return F.linear(hidden, emb.weight[: self.state["id_token_offset"]])
            # rows of the table, each taking its gradient (the padding row too), whether every row trains or not
            rows = emb.weight_rows if isinstance(emb, RowSubsetEmbedding) else emb.weight.__getitem__
            return F.linear(hidden, rows(self.recon_vocab))
        if self.backbone.config.tie_word_embeddings:
            hidden = hidden * self.backbone.config.d_model**-0.5
        return self.backbone.lm_head(hidden)

    def forward(
        self,
        input_ids,
        attention_mask,
        prefix,
        neg_input_ids=None,
        neg_attention_mask=None,
        neg_prefix=None,
        group=None,
        anchor=None,
    ) -> dict:
        """Losses of the current phase and position on one batch. `group`: a number per row, equal for rows that
        share their ID prefix (the same-prefix contrastive loss); neg_*: one hard negative per row (inbatch);
        `anchor`: the rows' states at the phase's start (indexer.neighbour_weight)."""
        t, cfg = self.position, self.cfg
        commit = t > 1 and self.phase != "warmup"
        lower = self.lower_states(input_ids, attention_mask)
        with torch.set_grad_enabled(self.phase != "warmup" and torch.is_grad_enabled()):
            states = self.states(input_ids, attention_mask, prefix, every=commit, lower=lower)
        h = states[:, -1]
        q = self.query(h, prefix, t)
        out = {}
        slots = [self.codebooks[s](codes=prefix[:, s].long()).detach() for s in range(t - 1)]
        if self.phase == "joint":
            logits, z, codes = self.codebooks[t - 1](
                h,
                selection=cfg.selection,
                temperature=cfg.temperature,
                gumbel=cfg.gumbel and self.training,
                prefix=prefix,
            )
            out["codes"] = codes
            if cfg.usage_at(t) > 0:
                out["usage"] = usage_loss(logits, cfg.temperature)
            if cfg.collision_weight > 0 and t > 1 and group is not None:
                out["collision"] = prefix_collision_loss(logits, group, cfg.temperature)
            if cfg.neighbour_weight > 0 and anchor is not None:
                out["neighbour"] = neighbourhood_loss(h, anchor, cfg.contrastive_temperature)
        else:
            z = q
        slots = torch.stack(slots + [z], 1)
        valid = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids)
        mask = reconstruction_mask(
            attention_mask, slots.shape[1], cfg.mask_ratio_first if t == 1 else cfg.mask_ratio_later
        )
        hidden = self.reconstructor(slots.sum(1), slots, self.backbone.get_input_embeddings()(input_ids), mask)
        targets = input_ids
        if self.recon_index is not None:
            targets = self.recon_index[input_ids]
            valid = valid & (targets >= 0)
        # the vocabulary head only where there is a target: it is most of a step's cost on a CPU
        out["recon"], out["accuracy"] = reconstruction_loss(
            self.token_logits(hidden[valid]), targets[valid], torch.ones_like(targets[valid], dtype=torch.bool)
        )
        loss = out["recon"]
        if "usage" in out:
            loss = loss + cfg.usage_at(t) * out["usage"]
        if "collision" in out:
            loss = loss + cfg.collision_weight * out["collision"]
        if "neighbour" in out:
            loss = loss + cfg.neighbour_weight * out["neighbour"]
        same_prefix = t > 1 and cfg.contrastive == "prefix"
        weight = cfg.prefix_weight if same_prefix else cfg.contrastive_weight
        if self.phase != "warmup" and weight > 0 and (group is not None or not same_prefix):
            if cfg.view_drop > 0 and self.training:  # a second view that also lacks some of the document's tokens
                keep = torch.rand(attention_mask.shape, device=attention_mask.device) >= cfg.view_drop
                keep[:, 0] = True
                view_mask = attention_mask * keep.to(attention_mask.dtype)
                h2 = self.states(input_ids, view_mask, prefix)[:, -1]
            else:  # a second dropout view
                h2 = self.states(input_ids, attention_mask, prefix, lower=lower)[:, -1]
            if same_prefix:
                out["contrastive"] = prefix_contrastive_loss(
                    q, self.query(h2, prefix, t), group, cfg.prefix_similarity, cfg.contrastive_temperature
                )
            else:
                neg = None
                if neg_input_ids is not None:
                    neg = self.states(neg_input_ids, neg_attention_mask, neg_prefix)[:, -1]
                out["contrastive"] = contrastive_loss(h, h2, cfg.contrastive_temperature, neg)
            loss = loss + weight * out["contrastive"]
        if commit:
            terms = [
                F.cross_entropy(self.code_scores(states[:, s], s + 1, prefix), prefix[:, s].long())
                for s in range(t - 1)
            ]
            out["commitment"] = torch.stack(terms).mean()
            loss = loss + cfg.commitment_weight * out["commitment"]
        out["loss"] = loss
        return out
