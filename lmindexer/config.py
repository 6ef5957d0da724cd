"""Typed configuration: every default lives here, YAML files in configs/ and `key.sub=value` overrides change them.

A config is a tree of dataclasses. `load_config(path, overrides)` reads a YAML file, applies command-line overrides,
and checks every key and type, naming the offending key in the error.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A bad key or value in a config file or an override."""


def opt(default, help: str, experimental: bool = False):
    """A config field with a help text (shown by `lmindexer <cmd> --help`). `experimental`: an ablation switch of
    the method, listed apart from what a user sets (its default is the recipe; other values reproduce an
    ablation or the original code's choice)."""
    meta = {"help": help, "experimental": experimental}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class StorageConfig:
    s3_endpoint: str = opt("", "host:port of an S3-compatible server (empty: AWS default endpoint)")
    s3_scheme: str = opt("https", "http or https for s3_endpoint")
    s3_region: str = opt("", "S3 region (empty: from the environment)")


@dataclass
class DataConfig:
    input: str = opt("", "corpus: a file, folder, glob or URI (s3://...); 'builtin:demo' is the embedded corpus")
    format: str = opt("auto", "auto | jsonl | csv | tsv | parquet | beir")
    id_field: str = opt(
        "",
        "field holding the document id (empty: format default: doc_id, _id, id, item_id); "
        "'@row' numbers rows as <file>:<row>",
    )
    text_fields: list = opt(["title", "text"], "fields joined (in order) into the document text")
    text_separator: str = opt("; ", "separator placed between text fields")
    label_fields: list = opt([], "fields kept as labels: the first becomes `label`, all of them `labels`")
    keep_extra: bool = opt(True, "keep the other input fields as extra string columns (non-strings JSON-encoded)")
    csv_columns: list = opt([], "column names for CSV/TSV files without a header line")
    output: str = opt("", "prepared corpus folder; its shards go to docs/ inside it (empty: <output_dir>/corpus)")
    rows_per_shard: int = opt(50000, "rows per output parquet file")
    on_bad: str = opt("skip", "skip (count, log, keep in <output>/_skipped) or error (stop at the first bad row)")
    max_text_chars: int = opt(20000, "documents longer than this are handled by on_long")
    on_long: str = opt("truncate", "truncate | skip | error for documents past max_text_chars")


@dataclass
class DemoConfig:
    num_docs: int = opt(1000, "documents in the embedded demo corpus")
    num_users: int = opt(1000, "user sessions in the demo corpus")
    num_queries: int = opt(3000, "queries with known relevant documents")


@dataclass
class ModelConfig:
    backbone: str = opt(
        "t5",
        "indexer backbone: t5 (encoder-decoder) or encoder (encoder-only: BERT, MiniLM, "
        "MPNet; the earlier codes are prepended to its input)",
    )
    name_or_path: str = opt(
        "",
        "pretrained backbone (local folder, hub name, URI, or 'minilm-offline' with the "
        "[minilm] extra); empty: build from preset with a tokenizer trained on the corpus",
    )
    preset: str = opt(
        "tiny",
        "shape when building from scratch: tiny | mini | small | base (= t5-base; for "
        "backbone=encoder a BERT of the same width, depth and heads)",
    )
    vocab_size: int = opt(4000, "vocabulary of a tokenizer trained on the corpus")
    tokenizer_sample: int = opt(200000, "documents read to train the tokenizer")
    max_length: int = opt(64, "tokens per document (longer ones are cut)")
    dropout: float = opt(0.1, "dropout of the backbone (also makes the two contrastive views differ)")


@dataclass
class IndexerConfig:
    num_positions: int = opt(3, "ID length T (positions learned one after another)")
    codebook_size: int = opt(64, "codes K per position")
    selection: str = opt(
        "l2",
        "l2 (nearest code, as the k-means that starts each codebook) or dot (argmax h.E, as "
        "the paper; favours codes of large norm)",
        experimental=True,
    )
    temperature: float = opt(1.0, "tau of softmax(h.E/tau) in the straight-through estimator", experimental=True)
    gumbel: bool = opt(False, "add Gumbel noise to the code logits while training", experimental=True)
    mask_ratio_first: float = opt(0.5, "share of context tokens hidden from the reconstructor at position 1")
    mask_ratio_later: float = opt(0.7, "share hidden at positions 2..T")
    recon_layers: int = opt(1, "layers of the reconstructor")
    contrastive_weight: float = opt(0.1, "weight of the contrastive loss")
    contrastive_temperature: float = opt(0.1, "temperature of the contrastive loss")
    commitment_weight: float = opt(1.0, "weight of the commitment loss (positions >= 2)")
    hard_negatives: bool = opt(
        True,
        "contrastive=inbatch: from position 2 on, add a document with the same ID prefix as a negative",
        experimental=True,
    )
    contrastive: str = opt(
        "prefix",
        "from position 2 on: prefix (as the original code: batches hold groups of "
        "documents that share their ID prefix, and each document must pick its own "
        "second view among its group's; documents alone in their group are skipped) or "
        "inbatch (all in-batch views plus one same-prefix hard negative). Position 1 "
        "always uses in-batch negatives",
        experimental=True,
    )
    prefix_group: int = opt(
        5,
        "contrastive=prefix: same-prefix documents placed together in a batch (the document "
        "and up to prefix_group-1 candidates; the original code: 1 + 4)",
        experimental=True,
    )
    prefix_similarity: str = opt(
        "cos",
        "contrastive=prefix: cos (cosine / contrastive_temperature) or dot (raw dot "
        "products, as the original code; with dropout views its loss is ~0 from the "
        "first steps here, so no gradient)",
        experimental=True,
    )
    view_drop: float = opt(
        0.0,
        "share of document tokens hidden from the second contrastive view (0: the views differ by dropout only)",
        experimental=True,
    )
    prefix_weight: float = opt(
        1.0, "contrastive=prefix: weight of the same-prefix contrastive loss (original: 1)", experimental=True
    )
    residual: bool = opt(
        True,
        "codebook t scores h_t centred on its prefix: minus one learned offset per earlier "
        "(position, code), fitted at the k-means step as the mean of h_t over the documents "
        "with that code, and k-means runs on the centred states",
        experimental=True,
    )
    usage_weight: float = opt(
        0.1,
        "weight of the code-usage term log K - H(mean code distribution of the batch), "
        "a guard against codebook collapse in joint training (0: off)",
    )
    usage_from: int = opt(
        1,
        "the first position the code-usage term applies to (2: position 1's codes follow the encoder's own "
        "clusters, only later positions are pushed to spread their parent's documents)",
        experimental=True,
    )
    usage_weight_first: float = opt(
        -1.0,
        "with usage_from=1: the usage term's weight at position 1 alone (negative: usage_weight), so that position 1 "
        "can be pushed less towards even codes than later positions",
        experimental=True,
    )
    collision_weight: float = opt(
        0.0,
        "positions >= 2 with contrastive=prefix: weight of the same-prefix collision term, the mean over pairs of "
        "batch documents that share their ID prefix of the probability that both pick the same code (0: off)",
    )
    neighbour_weight: float = opt(
        0.0,
        "joint phase: weight of a term that keeps each batch's neighbourhoods as the position's start had them (the "
        "KL divergence from the start states' in-batch similarity distribution to the current states', at "
        "contrastive_temperature; the start states come from one inference pass over every document before the "
        "phase). 0: off",
        experimental=True,
    )
    later_positions: str = opt(
        "all",
        "what the joint phase trains from position 2 on: all (encoder, codebook t, reconstructor) or codebook "
        "(codebook t and the reconstructor; the encoder stays as position 1 left it, so no earlier code moves)",
        experimental=True,
    )
    staged_encoders: bool = opt(
        True,
        "keep the encoder as it was when each position's codes were assigned and compute code t with that copy, so "
        "training later positions moves no earlier code (the final indexer gives every document learn-ids' own "
        "codes, as the original code's per-stage IDs); costs one backbone copy per position that later training "
        "changes, on disk and in memory when assigning",
        experimental=True,
    )
    recon_vocab: str = opt(
        "corpus",
        "backbone=encoder: the reconstruction head's vocabulary: corpus (the tokens that "
        "occur in the tokenised corpus; a 30k-token head is most of a CPU step) or full "
        "(every document token of the tokenizer)",
        experimental=True,
    )
    frozen_layers: int = opt(
        0,
        "backbone=encoder: the lowest N transformer layers are frozen and run once per batch "
        "without gradients, with the ID slots hidden; the slots join from layer N on "
        "(cheaper positions on CPU: 0 = the whole encoder trains and sees the slots)",
    )
    warmup_epochs: int = opt(0, "epochs training the reconstructor alone (encoder frozen)")
    continuous_epochs: int = opt(1, "epochs without the codebook (continuous h_t), before k-means")
    joint_epochs: int = opt(2, "epochs of encoder + codebook + reconstructor after k-means")
    epoch_figures: bool = opt(
        False,
        "after every joint epoch, assign code t to every document (dropout off) and add what the assignment step "
        "reports (assign_ami, assign_perplexity, assign_suffix_share, ...) to the epoch's figures: curves over "
        "epochs in learn_ids/progress.json, for one assignment pass per epoch; the codes themselves go to "
        "learn_ids/snapshot-<t>-joint/epoch-<n>-code.npy (one per document, in corpus order)",
    )
    trained_positions: int = opt(
        0,
        "positions that get the epochs above (0: all); later ones only take k-means on "
        "their conditioned states and assignment (cheap, for large pretrained backbones)",
    )
    lr: float = opt(1e-3, "learning rate")
    batch_size: int = opt(32, "documents per batch per worker")
    kmeans_sample: int = opt(100000, "documents embedded to fit each codebook's k-means")
    kmeans_iters: int = opt(50, "k-means iterations")
    output: str = opt(
        "",
        "where the trained indexer goes (empty: <output_dir>/indexer); a URI gets a copy of the "
        "folder learn-ids keeps in <output_dir>/learn_ids",
    )

    def usage_at(self, position: int) -> float:
        """Weight of the code-usage term at `position` (1-based): 0 before usage_from, usage_weight_first at
        position 1 when that is set (>= 0), usage_weight otherwise."""
        if self.usage_weight <= 0 or position < self.usage_from:
            return 0.0
        if position == 1 and self.usage_weight_first >= 0:
            return self.usage_weight_first
        return self.usage_weight


@dataclass
class TrainConfig:
    num_workers: int = opt(2, "Ray Train workers")
    use_gpu: bool = opt(False, "one GPU per worker")
    cpus_per_worker: float = opt(0.5, "CPUs reserved per worker (fractions leave room for Ray Data on small machines)")
    engine: str = opt(
        "auto", "auto (deepspeed on GPUs, ddp on CPUs, where DeepSpeed's engine slows each step) | deepspeed | ddp"
    )
    zero_stage: int = opt(2, "DeepSpeed ZeRO stage 0-3")
    precision: str = opt("auto", "auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    grad_clip: float = opt(1.0, "gradient norm clip (0: off)")
    checkpoint_every_steps: int = opt(0, "checkpoint every N steps as well as at epoch ends (0: epoch ends only)")
    checkpoint_min_seconds: float = opt(
        30.0,
        "an epoch end writes a checkpoint only when this long has passed since the last one (the last epoch and an "
        "early stop always do; every epoch's metrics go to the run's history): short epochs of small models "
        "otherwise spend more time saving than training. 0: every epoch",
    )
    cache_mb: float = opt(
        1024.0,
        "a worker whose share of the training data is at most this many MiB keeps it in memory after the first "
        "epoch and reshuffles it there, instead of streaming it from Ray Data again every epoch (0: always stream)",
    )
    max_failures: int = opt(2, "worker-group restarts allowed before a run fails")
    log_every_steps: int = opt(20, "steps between progress lines (0: none within an epoch)")
    log_every_epochs: int = opt(1, "epochs between epoch lines (the last epoch and an early stop always print one)")
    storage_path: str = opt("", "where Ray Train keeps runs and checkpoints (empty: <output_dir>/ray); any URI")


@dataclass
class InferenceConfig:
    """The Ray Data actor pools of batch inference: assign-ids, baseline-ids' embeddings, evaluate's decoding."""

    actors: int = opt(2, "most actors of the Ray Data pool that embeds, assigns codes or decodes")
    min_actors: int = opt(1, "actors started at once; the pool grows to inference.actors while work waits")
    batch_size: int = opt(256, "documents per inference batch")
    threads: int = opt(
        0,
        "torch threads of each inference actor on CPU (0: the machine's cores over inference.actors, at least 1); "
        "GPU actors and a step run in process (ray.in_process_rows) keep torch's own",
    )


@dataclass
class AssignConfig:
    indexer: str = opt("", "indexer folder (empty: <output_dir>/indexer)")
    output: str = opt("", "ID table folder (empty: <output_dir>/ids)")
    existing: str = opt("", "an earlier ID table: its IDs stay as they are, new documents get IDs around them")
    collisions: str = opt(
        "suffix",
        "suffix (extra position) or rebalance (move to the next-nearest free last "
        "code first, then suffix what is left)",
    )
    candidates: int = opt(8, "last-level codes kept per document for rebalancing")
    files_per_round: int = opt(4, "input shards per committed round (a re-run redoes at most one round)")


@dataclass
class BaselineConfig:
    method: str = opt(
        "rkmeans",
        "hkmeans (DSI hierarchical k-means) | rkmeans (residual k-means) | rqvae (TIGER) | "
        "random; ID length and K come from indexer.num_positions / indexer.codebook_size",
    )
    embeddings: str = opt(
        "encoder",
        "'encoder' (mean-pooled T5 encoder of baseline.encoder) or the corpus field that holds each document's vector",
    )
    encoder: str = opt(
        "",
        "model that embeds the documents: a T5 or indexer folder, any Hugging Face encoder, or "
        "'minilm-offline' (the [minilm] extra) (empty: <output_dir>/backbone)",
    )
    output: str = opt("", "ID table folder (empty: <output_dir>/ids-<method>)")
    fit_sample: int = opt(100000, "documents the k-means methods fit on (RQ-VAE trains on all of them)")
    rqvae_hidden: list = opt([256, 128], "RQ-VAE encoder MLP widths (the decoder mirrors them)")
    rqvae_latent: int = opt(32, "RQ-VAE latent size")
    rqvae_beta: float = opt(0.25, "RQ-VAE commitment weight")
    rqvae_epochs: int = opt(20, "RQ-VAE training epochs")
    rqvae_lr: float = opt(1e-3, "RQ-VAE learning rate")
    rqvae_batch_size: int = opt(256, "RQ-VAE batch size per worker")


@dataclass
class GeneratorConfig:
    task: str = opt(
        "retrieval", "retrieval (query -> document ID; also product search) or rec (user history -> next item ID)"
    )
    kind: str = opt(
        "auto",
        "auto: seqrec for rec, t5 for retrieval; t5: a T5 writes the ID token by token under the ID trie "
        "(beam search; retrieval and rec); seqrec (rec): a causal transformer reads the history as item vectors "
        "composed from their IDs and scores every ID in the table exactly in one pass (no beam search, only IDs "
        "that exist; settings: compose, seqrec_*, max_history, epochs, lr, batch_size, dropout)",
    )
    compose: str = opt(
        "prefixes",
        "kind=seqrec: an item's vector is the sum of one embedding per distinct prefix of its ID, the full ID with "
        "its suffix last (prefixes), or of one per (position, code) and one per suffix (codes)",
        experimental=True,
    )
    seqrec_dim: int = opt(64, "kind=seqrec and the SASRec reference: width of the transformer and the item vectors")
    seqrec_layers: int = opt(2, "kind=seqrec and the SASRec reference: transformer layers (2 heads each)")
    data: str = opt(
        "",
        "retrieval: a BEIR folder (queries.jsonl, qrels/<split>.tsv); rec: a sequences file "
        "(`user item item ...` in time order) (empty: the demo's, with data.input=builtin:demo)",
    )
    ids: str = opt("", "ID table folder the generator learns to emit (empty: <output_dir>/ids)")
    init: str = opt(
        "",
        "T5 the generator starts from: a folder (backbone or indexer) or hub name "
        "(empty: <output_dir>/backbone, which must then be a T5)",
    )
    output: str = opt("", "generator folder (empty: <output_dir>/generator-<task>-<ids folder name>)")
    codebook_init: bool = opt(
        True,
        "start the ID-token embeddings from the codebooks of the indexer that made the "
        "IDs (when the ID table names one and the widths match)",
        experimental=True,
    )
    indexing: bool = opt(True, "retrieval: also train document text -> its ID (DSI/NCI indexing pairs)")
    indexing_views: int = opt(
        0,
        "retrieval: also this many pseudo-queries per document (views, see view_kind; NCI's "
        "document-as-query) -> its ID, so every document is met as a query",
    )
    view_kind: str = opt(
        "words",
        "retrieval: what an indexing view is: words (2-6 of the document's words in order) or sentences (one of its "
        "sentences of 5 words or more, drawn without replacement: for queries that are sentences, e.g. claims)",
        experimental=True,
    )
    history: str = opt(
        "text", "rec: the history as item texts (as LMIndexer) or as item IDs (as TIGER)", experimental=True
    )
    max_history: int = opt(
        20, "rec: most recent items of a history the generator reads (kind=seqrec and SASRec: oldest first)"
    )
    id_softmax: bool = opt(
        True,
        "the output softmax runs over the ID tokens and eos alone, in training and decoding (the start model's word "
        "tokens take no probability mass); false: over the whole vocabulary, as a plain seq2seq T5",
        experimental=True,
    )
    max_source_length: int = opt(64, "input tokens (longer inputs are cut)")
    max_train_examples: int = opt(0, "train on a seeded sample of this many examples (0: all)")
    epochs: int = opt(10, "training epochs (at most: see patience)")
    lr: float = opt(1e-3, "learning rate")
    dropout: float = opt(
        0.1, "dropout while training (a small T5 trained from scratch memorises its IDs faster with 0)"
    )
    batch_size: int = opt(
        64,
        "examples per optimizer step over all workers (the global batch; each of the "
        "train.num_workers workers takes batch_size / num_workers)",
    )
    lr_schedule: str = opt(
        "linear", "learning-rate schedule after a linear warm-up: linear (decay to 0), cosine or constant"
    )
    warmup: float = opt(0.05, "share of the optimizer steps spent warming the learning rate up")
    encoder: str = opt(
        "",
        "retrieval: a frozen pretrained text encoder (a Hugging Face encoder folder or name, e.g. minilm-offline) "
        "whose mean-pooled embedding of each input the generator's decoder reads, in place of a T5 encoder that "
        "learns the words from scratch (empty: the T5 reads the tokens)",
    )
    encoder_slots: int = opt(
        4, "with generator.encoder: memory vectors the decoder reads, projected from the embedding"
    )
    encoder_max_length: int = opt(128, "with generator.encoder: input tokens the encoder reads")
    group_by_length: bool = opt(
        True,
        "batches of similar input length, each cut to its longest input (regrouped within pools of 8 shuffled "
        "batches): short inputs padded to max_source_length cost their own length, not the maximum",
        experimental=True,
    )
    val_examples: int = opt(
        500,
        "validation examples decoded under the trie after every epoch (rec: the second-to-"
        "last item of seeded users; retrieval: qrels/dev.tsv, else 10% of the train queries, "
        "at most this many, held out of training); the best epoch's weights are kept "
        "(0: no validation, the last epoch's weights)",
    )
    patience: int = opt(3, "epochs without a better validation recall@<largest K> before training stops (0: never)")
    run_tasks: list = opt(
        [],
        "tasks (retrieval, rec) `lmindexer run` trains and evaluates a generator for after the "
        "IDs, each with the rest of this section (empty: none)",
    )

    @property
    def model_kind(self) -> str:
        """`kind` with auto resolved: seqrec for rec, t5 for retrieval."""
        return ("seqrec" if self.task == "rec" else "t5") if self.kind == "auto" else self.kind


@dataclass
class EvaluateConfig:
    """`lmindexer evaluate`, and the evaluation after train-generator: which examples, the cut-offs, the decoding,
    and the SASRec reference row (rec)."""

    split: str = opt("test", "retrieval: the qrels split evaluated; rec: test (last item) or valid (second to last)")
    max_queries: int = opt(0, "evaluate a seeded sample of this many queries or users (0: all)")
    ks: list = opt([1, 5, 10], "cut-offs K of Recall/NDCG/MRR/hit@K (the largest also monitors validation)")
    num_beams: int = opt(0, "beam width of the trie-constrained beam search (0: the largest K); never below it")
    sasrec_epochs: int = opt(
        30,
        "rec: epochs of the SASRec reference row that evaluate trains (Ray Train) on the training sequences "
        "and ranks beside the generator (0: no SASRec row); it reads generator.max_history items, "
        "generator.seqrec_dim wide, generator.seqrec_layers deep, learning rate 1e-3, batch 128",
    )
    sasrec_dropout: float = opt(0.5, "rec: dropout of the SASRec reference (0.5 for sparse data, as its paper)")


@dataclass
class TuneConfig:
    target: str = opt("learn-ids", "what each trial trains: learn-ids, or generator (train-generator + evaluate)")
    space: dict = opt(
        {},
        "search space {'section.key': [kind, ...]}: choice or grid with values, uniform, loguniform "
        "or randint with low and high",
    )
    num_samples: int = opt(4, "trials drawn from the space (with grid keys: repeats of the whole grid)")
    objective: str = opt(
        "",
        "what ranks the trials; learn-ids: ami (first code vs the first label field), recon, "
        "perplexity (last position's codes) or collision_rate; generator: recall@K, ndcg@K, "
        "mrr@K, hit@K or loss (empty: ami with labels, else recon; recall@<largest K>)",
    )
    scheduler: str = opt("asha", "asha (stop weak trials early on the per-epoch training loss) or fifo (no stopping)")
    grace_period: int = opt(1, "ASHA: epochs every trial runs before it may be stopped")
    reduction_factor: int = opt(2, "ASHA: the share 1/reduction_factor of trials that go on at each rung")
    max_concurrent: int = opt(0, "trials at once (0: as many as half the cluster's CPUs, or its GPUs, fit)")
    output: str = opt("", "experiment folder (empty: <output_dir>/tune); re-running the command resumes it")


@dataclass
class ReportConfig:
    tables: list = opt(
        [],
        "ID tables to report, each PATH or NAME=PATH: an assign-ids/baseline-ids folder, or a "
        "peer JSON index {key: ['<a_12>', '<b_7>', ...]} (empty: <output_dir>/ids)",
    )
    key_field: str = opt("", "corpus field whose value keys the peer JSON tables (empty: the doc_id)")
    output: str = opt("", "report folder (empty: <output_dir>/report)")


@dataclass
class ServeConfig:
    host: str = opt("127.0.0.1", "address the HTTP server listens on (0.0.0.0: every interface)")
    port: int = opt(8000, "HTTP port")
    generator: str = opt(
        "", "folder of a one-pass recommender (generator.kind=seqrec) for /recommend (empty: no /recommend)"
    )
    retriever: str = opt(
        "", "folder of a retrieval generator (generator.task=retrieval) for /retrieve (empty: no /retrieve)"
    )
    min_replicas: int = opt(1, "replicas Ray Serve keeps running")
    max_replicas: int = opt(1, "replicas Ray Serve may scale up to with the load (above min_replicas: autoscaling)")
    max_batch: int = opt(256, "documents in one /assign request")
    max_k: int = opt(100, "largest k of /recommend and /retrieve")
    batch_wait_s: float = opt(
        0.005, "how long a replica waits to batch concurrent /assign (or /retrieve) requests into one pass"
    )
    access_log: bool = opt(False, "log every request (Ray Serve's access log)")


@dataclass
class RayConfig:
    address: str = opt(
        "",
        "Ray cluster address (empty: $RAY_ADDRESS, set inside `ray job submit`, else start a local "
        "Ray; 'auto': the running cluster)",
    )
    num_cpus: int = opt(0, "logical CPUs of a local Ray (0: twice the cores, so workers and Ray Data both fit)")
    dashboard: bool = opt(
        True,
        "a local Ray serves its dashboard (127.0.0.1:8265 or the next free port); when it "
        "cannot start (a busy machine), Ray starts again without it, with a warning",
    )
    shuffle: str = opt(
        "sort_shuffle_pull_based",
        "Ray Data shuffle for groupby: sort_shuffle_pull_based (tasks only; "
        "fastest to start) | hash_shuffle | shuffle_v2 (actor based)",
    )
    unique_shuffle: str = opt(
        "auto",
        "Ray Data shuffle of the uniqueness pass over more than in_process_rows codes (assign-ids, baseline-ids): "
        "auto = shuffle_v2 above 100,000 codes, ray.shuffle below. shuffle_v2 keeps the driver's memory flat; the "
        "sort shuffles return every map task's partitions of under 100 KiB to the driver (Ray keeps small objects "
        "in their owner's memory), while shuffle_v2's actors take seconds to start",
    )
    in_process_rows: int = opt(
        20000,
        "a batch step (parsing the input, tokenising, embedding, code assignment, the uniqueness pass, evaluation "
        "decoding) over at most this many rows runs in the calling process, and a training set of at most this many "
        "rows reaches the Ray Train workers through the object store, not through a Ray Data pipeline (which "
        "takes seconds to start); 0: always Ray Data",
    )
    parquet_v2: bool = opt(
        False,
        "Ray Data's DataSource V2 parquet reader: every read starts 32 footer-reader actors (new processes), "
        "seconds per read on small machines; off, read tasks read the footers themselves (Ray's V1 reader)",
    )


@dataclass
class Config:
    output_dir: str = opt("runs/default", "local or shared (NFS) folder for every output of a run")
    seed: int = opt(0, "random seed for every step")
    storage: StorageConfig = field(default_factory=StorageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    indexer: IndexerConfig = field(default_factory=IndexerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    assign: AssignConfig = field(default_factory=AssignConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    ray: RayConfig = field(default_factory=RayConfig)


MOVED = {  # keys that moved: their old name is an error that names the new one
    **{f"train.inference_{k}": f"inference.{k}" for k in ("actors", "min_actors", "batch_size", "threads")},
    "generator.eval_split": "evaluate.split",
    "generator.max_eval": "evaluate.max_queries",
    **{f"generator.{k}": f"evaluate.{k}" for k in ("ks", "num_beams", "sasrec_epochs", "sasrec_dropout")},
}
SHUFFLES = {"sort_shuffle_pull_based", "sort_shuffle_push_based", "hash_shuffle", "shuffle_v2"}
CHOICES = {
    "data.format": {"auto", "jsonl", "csv", "tsv", "parquet", "beir"},
    "data.on_bad": {"skip", "error"},
    "data.on_long": {"truncate", "skip", "error"},
    "model.backbone": {"t5", "encoder"},
    "model.preset": {"tiny", "d128", "tiger", "mini", "small", "base"},
    "indexer.selection": {"dot", "l2"},
    "indexer.contrastive": {"prefix", "inbatch"},
    "indexer.prefix_similarity": {"dot", "cos"},
    "indexer.recon_vocab": {"corpus", "full"},
    "indexer.later_positions": {"all", "codebook"},
    "train.engine": {"auto", "deepspeed", "ddp"},
    "train.zero_stage": {0, 1, 2, 3},
    "train.precision": {"auto", "fp32", "bf16"},
    "assign.collisions": {"suffix", "rebalance"},
    "ray.shuffle": SHUFFLES,
    "ray.unique_shuffle": SHUFFLES | {"auto"},
    "baseline.method": {"hkmeans", "rkmeans", "rqvae", "random"},
    "generator.task": {"retrieval", "rec"},
    "generator.lr_schedule": {"linear", "cosine", "constant"},
    "generator.history": {"text", "ids"},
    "generator.kind": {"auto", "t5", "seqrec"},
    "generator.compose": {"codes", "prefixes"},
    "generator.view_kind": {"words", "sentences"},
    "generator.run_tasks": {"retrieval", "rec"},
    "tune.target": {"learn-ids", "generator"},
    "tune.scheduler": {"asha", "fifo"},
}


def _coerce(key: str, value, typ):
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if value is None:
            return ""
    elif typ is list:
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
    elif typ is dict:
        if isinstance(value, dict):
            return value
    raise ConfigError(f"config key '{key}': expected {typ.__name__}, got {type(value).__name__} ({value!r})")


def _apply(obj, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = prefix + key
        if full in MOVED:
            raise ConfigError(f"config key '{full}' is now '{MOVED[full]}'")
        if key not in names:
            near = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
            hint = f"did you mean '{prefix}{near[0]}'? " if near else ""
            raise ConfigError(
                f"unknown config key '{full}' ({hint}known in {prefix.rstrip('.') or 'the top level'}: "
                f"{', '.join(sorted(names))})"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, full + ".")
            continue
        value = _coerce(full, value, hints[key])
        for v in (value if isinstance(value, list) else [value]) if full in CHOICES else []:
            if v not in CHOICES[full]:
                raise ConfigError(f"config key '{full}': {v!r} is not one of {sorted(CHOICES[full], key=str)}")
        setattr(obj, key, value)


def _nest(dotted: str, value) -> dict:
    out: dict = {}
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def parse_override(text: str) -> dict:
    """`a.b=value` -> {'a': {'b': value}}; the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    return _nest(key.strip(), value)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        _apply(cfg, yaml.safe_load(p.read_text()) or {})
    for o in overrides or []:
        _apply(cfg, parse_override(o))
    if "://" in cfg.output_dir:
        raise ConfigError(
            f"output_dir={cfg.output_dir}: output_dir must be a local or shared (NFS) folder; put URIs "
            "in data.input, data.output, assign.output, baseline.output, indexer.output or "
            "train.storage_path"
        )
    return cfg


def override(cfg: Config, key: str, value) -> None:
    """Set one dotted key, with the same checks as a command-line override."""
    _apply(cfg, _nest(key, value))


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    cfg = Config()
    _apply(cfg, data)
    return cfg


def describe(sections: list[str]) -> str:
    """Every option of the given sections with default and help, for `--help`."""
    lines = []
    root = Config()
    for f in dataclasses.fields(root):
        value = getattr(root, f.name)
        if dataclasses.is_dataclass(value):
            if f.name not in sections:
                continue
            for sub in dataclasses.fields(value):
                tag = "[experimental] " if sub.metadata.get("experimental") else ""
                lines.append(f"  {f.name}.{sub.name}={getattr(value, sub.name)!r}\n      {tag}{sub.metadata['help']}")
        elif "" in sections:
            lines.append(f"  {f.name}={value!r}\n      {f.metadata['help']}")
    return "\n".join(lines)


def reference_markdown() -> str:
    """docs/configuration.md: every option of every section with its default, type, choices and help, from the
    config itself (tests/test_config.py checks the committed file against this)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `lmindexer/config.py` by `python -m lmindexer.config > docs/configuration.md`; do not edit.",
        "Set an option in a YAML file (`--config`) or on the command line as `section.key=value`.",
    ]
    root = Config()
    top = [f for f in dataclasses.fields(root) if not dataclasses.is_dataclass(getattr(root, f.name))]
    groups = [("(top level)", "", root, top)] + [
        (f.name, f"{f.name}.", getattr(root, f.name), dataclasses.fields(getattr(root, f.name)))
        for f in dataclasses.fields(root)
        if dataclasses.is_dataclass(getattr(root, f.name))
    ]
    for title, prefix, obj, fields in groups:
        lines += ["", f"## {title}"]
        user = [f for f in fields if not f.metadata.get("experimental")]
        experimental = [f for f in fields if f.metadata.get("experimental")]
        for part, head in ((user, ""), (experimental, EXPERIMENTAL)):
            if not part:
                continue
            lines += ([""] + [head] if head else []) + ["", "| option | default | what it does |", "|---|---|---|"]
            for f in part:
                key = prefix + f.name
                choices = (
                    f" One of: {', '.join(f'`{c}`' for c in sorted(CHOICES[key], key=str))}." if key in CHOICES else ""
                )
                text = (f.metadata["help"] + "." + choices).replace("|", "\\|").replace("..", ".")
                lines.append(f"| `{key}` | `{getattr(obj, f.name)!r}` | {text} |")
    return "\n".join(lines) + "\n"


EXPERIMENTAL = (
    "**Experimental**: ablation switches of the method. The defaults are the recipe; other values reproduce an "
    "ablation or the original code's choice (`bench/id_ablation.py`, docs/learning-ids.md)."
)


if __name__ == "__main__":
    print(reference_markdown(), end="")
