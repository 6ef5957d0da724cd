"""`lmindexer id-report`: quality figures for any ID table, ours or another tool's, as JSON, Markdown and PNG plots.

Reads our tables (assign-ids / baseline-ids folders: doc_id, codes, suffix) and peer JSON indexes
({key: ['<a_12>', '<b_7>', ...]}, as TIGER/LETTER-style code releases write them); labels come from the prepared
corpus, joined on doc_id (or on `report.key_field` for peer keys). Everything is computed on code arrays, so a
table of millions of documents needs only n x T integers in memory.
"""

from __future__ import annotations

import json
import logging
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import storage
from ..config import ConfigError, ReportConfig, StorageConfig
from ..eval.metrics import ami, code_usage, collision_rate, nmi, split_stats
from ..ids.table import IdTable, read_id_table
from ..paths import RunContext

log = logging.getLogger("lmindexer.report")
PEER_TOKEN = re.compile(r"(\d+)\D*$")


def _split_spec(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if sep and "/" not in name and ":" not in name:
        return name, path
    return os.path.basename(spec.rstrip("/")) or spec, spec


def read_table(spec: str, store: StorageConfig, keymap: dict | None = None, key_field: str = "") -> IdTable:
    """One ID table from NAME=PATH or PATH (a table folder, its parent, or a peer .json index, whose keys `keymap`
    maps to doc_ids: the corpus's `key_field`)."""
    name, path = _split_spec(spec)
    fs, p = storage.filesystem(path, store)
    if p.endswith(".json"):
        data = storage.read_json(fs, p)
        keys = list(data)
        missing = [k for k in keys if keymap is not None and k not in keymap]
        if missing:
            raise ConfigError(
                f"{spec}: {len(missing)} keys have no document with {key_field}=key (first: {missing[:3]})"
            )
        codes = np.array([[int(PEER_TOKEN.search(tok).group(1)) for tok in data[k]] for k in keys], dtype=np.int64)
        ids = np.array([keymap[k] if keymap is not None else k for k in keys], dtype=object)
        return IdTable(ids, codes, None, {"codebook_size": int(codes.max()) + 1}, name)
    return read_id_table(path, store, name)


def corpus_labels(run: RunContext, label_fields: list, key_field: str = "") -> tuple[pa.Table, list[str]]:
    """doc_id, the label fields (one column each: data.label_fields, else `label`) and, with a `key_field`, that
    field as `key`."""
    fs, path = run.filesystem(run.layout.docs)
    names = [
        c
        for c in ("doc_id", "label", "labels", "extra")
        if c in pq.read_schema(fs.open_input_file(storage.list_files(fs, path)[0])).names
    ]
    docs = pq.read_table(path, filesystem=fs, columns=names)
    fields = list(label_fields) or (["label"] if "label" in names else [])
    cols = {"doc_id": docs.column("doc_id")}
    if fields and "labels" in names:
        rows = docs.column("labels").to_pylist()
        for i, f in enumerate(fields):
            cols[f] = pa.array([r[i] if r is not None and len(r) > i else None for r in rows], pa.string())
    if key_field:
        k = key_field
        extra = [json.loads(e) if e else {} for e in docs.column("extra").to_pylist()] if "extra" in names else []
        cols["key"] = pa.array([None if e.get(k) is None else str(e[k]) for e in extra], pa.string())
    return pa.table(cols), [f for f in fields if f in cols]


def figures(t: IdTable, labels: dict[str, np.ndarray]) -> dict:
    """Every figure of the report for one table; `labels` holds one value (or None) per table row."""
    n, positions = t.codes.shape
    groups = t.prefix_groups
    sizes_full = np.bincount(groups[-1])
    out = {
        "documents": int(n),
        "num_positions": int(positions),
        "codebook_size": t.codebook_size,
        "distinct_prefixes": [int(lv.max()) + 1 for lv in groups],
        # share of documents that need a non-zero suffix (1 - distinct T-code IDs / documents)
        "collision_rate": round(collision_rate(t.codes), 4),
        # share of documents whose T codes some other document shares (every member of a collision group)
        "in_collision": round(float(sizes_full[sizes_full > 1].sum()) / n, 4),
        "largest_collision": int(sizes_full.max()),
        "split": split_stats(t.codes),
        "code_usage": [
            {k: round(v, 4) for k, v in code_usage(t.codes[:, p], t.codebook_size).items()} for p in range(positions)
        ],
        "cluster_sizes": {"first_code": _size_stats(np.bincount(groups[0])), "full_codes": _size_stats(sizes_full)},
    }
    if t.suffix is not None:
        out["max_suffix"] = int(t.suffix.max())
        out["documents_with_suffix"] = int((t.suffix > 0).sum())
    out["labels"] = {}
    for name, values in labels.items():
        has = np.array([v is not None and v != "" for v in values])  # unlabelled documents are left out
        if not has.any():
            continue
        y = values[has].astype(str)
        out["labels"][name] = {
            "labelled": int(has.sum()),
            "classes": int(len(set(y))),
            "ami": [round(ami(y, lv[has]), 4) for lv in groups],
            "nmi": [round(nmi(y, lv[has]), 4) for lv in groups],
        }
    return out


def _size_stats(sizes: np.ndarray) -> dict:
    sizes = sizes[sizes > 0]
    return {
        "clusters": int(len(sizes)),
        "max": int(sizes.max()),
        "mean": round(float(sizes.mean()), 2),
        "median": float(np.median(sizes)),
        "singletons": int((sizes == 1).sum()),
    }


def plot(t: IdTable, out_dir: str) -> list[str]:
    """Code usage per position (codes by frequency) and cluster sizes (first code and full codes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    positions = t.codes.shape[1]
    fig, axes = plt.subplots(1, positions, figsize=(3.2 * positions, 2.8), squeeze=False)
    for p, ax in enumerate(axes[0]):
        counts = np.sort(np.bincount(t.codes[:, p], minlength=t.codebook_size))[::-1]
        ax.bar(np.arange(len(counts)), counts, width=1.0)
        ax.axhline(len(t.codes) / t.codebook_size, color="k", lw=0.8, ls="--")
        ax.set(title=f"position {p + 1}", xlabel="codes, most used first", ylabel="documents" if p == 0 else "")
    fig.suptitle(f"{t.name}: code usage (dashed: uniform)")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, f"{t.name}-code-usage.png"))
    fig.savefig(paths[-1], dpi=90)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, lv in (("first code", t.prefix_groups[0]), ("full codes", t.prefix_groups[-1])):
        sizes = np.bincount(lv)
        ax.hist(
            sizes[sizes > 0],
            bins=np.unique(np.geomspace(1, sizes.max() + 1, 30).astype(int)),
            histtype="step",
            label=label,
        )
    ax.set(
        xscale="log", yscale="log", xlabel="documents per cluster", ylabel="clusters", title=f"{t.name}: cluster sizes"
    )
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out_dir, f"{t.name}-cluster-sizes.png"))
    fig.savefig(paths[-1], dpi=90)
    plt.close("all")
    return paths


def markdown(results: dict) -> str:
    lines = [
        "# ID quality report",
        "",
        "Collision rate: the share of documents that need a non-zero suffix (1 - distinct IDs / documents). "
        "In a collision: the share whose codes another document shares. Conditional perplexity at t: "
        "exp H(c_t | c_<t), the number of evenly used child codes a prefix splits into (1: c_t is a function of "
        "the earlier codes; in brackets the most it can be, every document of a prefix on a code of its own); "
        "children: mean distinct codes at t under one prefix of length t-1.",
        "",
        "| IDs | docs | T | distinct prefixes | collision rate | in a collision | largest collision | max suffix "
        "| codes used (perplexity) per position | conditional perplexity per position | children per prefix |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        usage = " / ".join(f"{u['used']}/{r['codebook_size']} ({u['perplexity']:.0f})" for u in r["code_usage"])
        cond = " / ".join(f"{s['cond_perplexity']:.1f} (≤{s['cond_perplexity_max']:.1f})" for s in r["split"])
        kids = " / ".join(f"{s['children_mean']:.1f}" for s in r["split"][1:]) or "-"
        lines.append(
            f"| {name} | {r['documents']} | {r['num_positions']} | "
            f"{' / '.join(map(str, r['distinct_prefixes']))} | {r['collision_rate']:.4f} | "
            f"{r['in_collision']:.4f} | {r['largest_collision']} | {r.get('max_suffix', '-')} | {usage} | "
            f"{cond} | {kids} |"
        )
    label_names = sorted({lab for r in results.values() for lab in r["labels"]})
    for lab in label_names:
        lines += [
            "",
            f"## Agreement with `{lab}` (AMI / NMI of the prefix of length t)",
            "",
            "| IDs | labelled | t=1 AMI | full AMI | t=1 NMI | full NMI | AMI per prefix length |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in results.items():
            s = r["labels"].get(lab)
            if s:
                lines.append(
                    f"| {name} | {s['labelled']} | {s['ami'][0]:.4f} | {s['ami'][-1]:.4f} | "
                    f"{s['nmi'][0]:.4f} | {s['nmi'][-1]:.4f} | {' / '.join(map(str, s['ami']))} |"
                )
    return "\n".join(lines) + "\n"


def id_report(report: ReportConfig, run: RunContext, label_fields: list) -> dict:
    """The stage: figures of `report.tables` (else the run's ID table) against the corpus's `label_fields` (the
    prepare stage's data.label_fields), written to report.output (else run.layout.report); the paths and a summary."""
    specs = list(report.tables) or [run.layout.ids]
    out_dir = run.layout.report
    os.makedirs(out_dir, exist_ok=True)
    try:
        corpus, fields = corpus_labels(run, label_fields, report.key_field)
    except FileNotFoundError:
        corpus, fields = None, []
        log.warning("id-report: no prepared corpus at %s, so no label scores", run.layout.docs)
    keymap = None
    if report.key_field and corpus is not None:
        keymap = {
            k: d for k, d in zip(corpus.column("key").to_pylist(), corpus.column("doc_id").to_pylist()) if k is not None
        }
    label_values = {f: np.array(corpus.column(f).to_pylist() + [None], dtype=object) for f in fields}
    results, plots = {}, []
    for spec in specs:
        t = read_table(spec, run.storage, keymap if spec.endswith(".json") else None, report.key_field)
        labels = {}
        if corpus is not None:  # a row not in the corpus points at the trailing None
            rows = pc.fill_null(
                pc.index_in(pa.array(t.doc_ids.astype(str)), value_set=corpus.column("doc_id")), len(corpus)
            ).to_numpy()
            labels = {f: values[rows] for f, values in label_values.items()}
        results[t.name] = figures(t, labels)
        plots += plot(t, out_dir)
        log.info(
            "id-report: %s: %d documents, collision rate %.4f", t.name, len(t.codes), results[t.name]["collision_rate"]
        )
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(results))
    return {
        "report": os.path.join(out_dir, "report.md"),
        "json": os.path.join(out_dir, "report.json"),
        "plots": plots,
        "tables": {
            n: {"collision_rate": r["collision_rate"], **{lab: s["ami"][0] for lab, s in r["labels"].items()}}
            for n, r in results.items()
        },
    }
