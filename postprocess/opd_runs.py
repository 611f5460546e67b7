"""Reading opd run directories: the shared loading code of the postprocess tools.

A run directory (the job's `run.dir`) holds `job.toml` (the job as opd ran it) and one folder per
stage. A stage folder may hold `metrics.jsonl` (one JSON object per step), `metrics.h5` (distill
stages: one float64 column per metric plus an int64 `step` column, NaN where a metric was not
logged; names may be slash paths) and `results.json` (the stage's summary). Both metrics files
carry the same float64 values (the JSON numbers are printed shortest-round-trip), so either gives
the numbers exactly; metrics.h5 is preferred when it can be read.

A path given to a tool may be a run directory or one stage folder.
"""

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Reading a metrics.h5 that a running opd holds open for writing: HDF5's file lock would refuse.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

# What each metric means (DESIGN.md §5; p is the student, q the teacher). Titles for figures and
# the README; a metric missing here is plotted under its own name.
METRIC_TITLES = {
    "loss": "loss (the step's objective value)",
    "grad_norm": "gradient norm",
    "lr": "learning rate",
    "kl_k1": "reverse KL, k1 estimate (log p - log q at the sampled token)",
    "kl_k3": "reverse KL, k3 estimate (e^d - 1 - d, d = log q - log p)",
    "kl_topk": "reverse KL on the renormalised student top-k",
    "kl_full": "exact reverse KL (signal = full)",
    "entropy_student": "student entropy H(p), nats",
    "entropy_teacher": "teacher entropy H(q), nats",
    "entropy_gap": "entropy gap |H(q) - H(p)| (mean over tokens)",
    "overlap_ratio": "overlap ratio |S_p ∩ S_q| / k",
    "overlap_mass_student": "overlap mass under p (student)",
    "overlap_mass_teacher": "overlap mass under q (teacher)",
    "overlap_advantage": "overlap-token advantage p̂ (log q̂ - log p̂)",
    "response_length": "response length (tokens)",
    "response_tokens": "response tokens in the step",
    "truncation_rate": "truncation rate",
    "rollout_accuracy": "rollout accuracy (verifier, training prompts)",
    "reward_auroc": "AUROC of the sequence-mean teacher reward",
    "eval_accuracy": "held-out accuracy",
    "gap_recovery": "gap recovery (acc - acc0) / (acc_teacher - acc0)",
    "on_policy": "on-policy batch (1) or fixed data (0)",
    "tokens_per_second": "response tokens per second",
    "tokens": "tokens in the step",
    "tokens_seen": "tokens seen",
    "step_seconds": "step wall time (s)",
    "comm_seconds": "communication time (s)",
}

# Per-position metrics: `<base>_pos<i>` (what opd writes) or `<base>/bucket_<i>` (DESIGN.md's
# slash form). Bucket i of n covers relative positions [i/n, (i+1)/n) of the response.
_POSITION_RE = [re.compile(r"^(?P<base>.+)_pos(?P<i>\d+)$"),
                re.compile(r"^(?P<base>.+)/bucket_(?P<i>\d+)$")]


def metric_title(name):
    if name in METRIC_TITLES:
        return METRIC_TITLES[name]
    if name.startswith("time_"):
        return f"time in phase '{name[5:]}' (s)"
    for rx in _POSITION_RE:
        m = rx.match(name)
        if m:
            return f"{metric_title(m['base'])}, position bucket {m['i']}"
    return name


@dataclass
class Stage:
    """One stage's metrics: `steps` (int64) and a float64 column per metric, NaN where absent."""
    name: str
    dir: Path
    kind: str = None
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    metrics: dict = field(default_factory=dict)
    source: Path = None  # the metrics file read, None when the stage has none
    results: dict = None  # results.json, when present

    def has(self, name):
        return name in self.metrics and bool(np.isfinite(self.metrics[name]).any())

    def final(self, name):
        """(step, value) at the last row where `name` is finite, or None."""
        col = self.metrics.get(name)
        if col is None:
            return None
        idx = np.flatnonzero(np.isfinite(col))
        if idx.size == 0:
            return None
        i = int(idx[-1])
        return int(self.steps[i]), float(col[i])

    def position_data(self):
        """{base: (buckets, array [bucket, row])} for each per-position metric family."""
        families = {}
        for name, col in self.metrics.items():
            for rx in _POSITION_RE:
                m = rx.match(name)
                if m:
                    families.setdefault(m["base"], {})[int(m["i"])] = col
                    break
        out = {}
        for base, cols in families.items():
            buckets = sorted(cols)
            out[base] = (buckets, np.vstack([cols[b] for b in buckets]))
        return out


@dataclass
class Run:
    dir: Path
    name: str  # the job's name, else the directory's
    stages: list


def read_h5(path):
    """(steps, {name: column}) from a metrics.h5; every float dataset, slash paths for groups."""
    import h5py  # only needed here; keeps the JSONL path usable without h5py
    with h5py.File(path, "r") as f:
        if "step" not in f:
            raise ValueError(f"{path}: no 'step' dataset, not an opd metrics file")
        steps = np.asarray(f["step"][...], dtype=np.int64)
        cols = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name != "step" and obj.ndim == 1 \
                    and obj.dtype.kind == "f":
                col = np.asarray(obj[...], dtype=np.float64)
                # A run cut inside an append can leave a column one row longer than `step`.
                cols[name] = col[:steps.size] if col.size >= steps.size else np.concatenate(
                    [col, np.full(steps.size - col.size, np.nan)])
        f.visititems(visit)
    return steps, cols


def read_jsonl(path):
    """(steps, {name: column}) from a metrics.jsonl: null, a missing key or a non-number is NaN.
    An unreadable line (a run killed mid-write leaves a partial last line) is skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
                rows.append(rec)
    steps = np.array([int(r["step"]) for r in rows], dtype=np.int64)
    names = sorted({k for r in rows for k in r if k != "step"})
    cols = {}
    for k in names:
        vals = [r.get(k) for r in rows]
        if not any(isinstance(v, (int, float)) for v in vals):
            continue
        cols[k] = np.array([float(v) if isinstance(v, (int, float)) else math.nan for v in vals])
    return steps, cols


def load_stage(stage_dir, name=None, kind=None):
    d = Path(stage_dir)
    st = Stage(name=name or d.resolve().name, dir=d, kind=kind)
    h5, jl = d / "metrics.h5", d / "metrics.jsonl"
    if h5.is_file():
        try:
            st.steps, st.metrics = read_h5(h5)
            st.source = h5
        except (OSError, ValueError, ImportError):
            pass  # fall back to the JSONL copy
    if st.source is None and jl.is_file():
        st.steps, st.metrics = read_jsonl(jl)
        st.source = jl
    res = d / "results.json"
    if res.is_file():
        try:
            st.results = json.loads(res.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            st.results = None
    return st


def is_stage_dir(d):
    return any((Path(d) / f).is_file() for f in ("metrics.jsonl", "metrics.h5", "results.json"))


def read_job(run_dir):
    """The parsed job.toml of a run directory, or {} when absent or unreadable."""
    p = Path(run_dir) / "job.toml"
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def job_name(run_dir):
    """A top-level `name`, or `[run] name`, of the job; else the directory's name."""
    job = read_job(run_dir)
    for name in (job.get("name"), job.get("run", {}).get("name")):
        if isinstance(name, str) and name:
            return name
    return Path(run_dir).resolve().name


def load_run(path):
    """A run directory (its stages in job order, then any other stage folders by name), or a
    single stage folder (its run's name when the parent holds job.toml)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{path}: no such directory")
    if is_stage_dir(p) and not (p / "job.toml").is_file():
        parent = p.resolve().parent
        kinds = {s.get("name"): s.get("kind") for s in read_job(parent).get("stage", [])}
        has_job = (parent / "job.toml").is_file()
        name = job_name(parent) if has_job else p.resolve().name
        return Run(dir=p, name=name, stages=[load_stage(p, kind=kinds.get(p.resolve().name))])
    job = read_job(p)
    order = [(s.get("name"), s.get("kind")) for s in job.get("stage", []) if s.get("name")]
    known = {n for n, _ in order}
    extra = sorted(c.name for c in p.iterdir() if c.is_dir() and c.name not in known
                   and is_stage_dir(c))
    stages = [load_stage(p / n, n, k) for n, k in order if (p / n).is_dir() and is_stage_dir(p / n)]
    stages += [load_stage(p / n, n) for n in extra]
    if not stages:
        raise FileNotFoundError(f"{path}: neither a run directory nor a stage folder "
                                "(no metrics.jsonl, metrics.h5 or results.json)")
    return Run(dir=p, name=job_name(p), stages=stages)


def unique_labels(runs):
    """Each run's name; where names repeat, the run's path instead, so legends stay distinct."""
    names = [r.name for r in runs]
    return [str(r.dir) if names.count(r.name) > 1 else r.name for r in runs]


def stage_groups(runs):
    """[(stage name, [(label, Stage)])], stages of the same name together, in first-seen order;
    runs of a single stage each (stage folders given alone) form one group whatever the names."""
    labels = unique_labels(runs)
    if all(len(r.stages) == 1 for r in runs):
        return [(runs[0].stages[0].name, [(lab, r.stages[0]) for lab, r in zip(labels, runs)])]
    groups = {}
    for lab, r in zip(labels, runs):
        for st in r.stages:
            groups.setdefault(st.name, []).append((lab, st))
    return list(groups.items())


def safe_filename(name):
    """A metric or stage name as a file name (slash paths flattened)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name.replace("/", "__"))


def fmt(value, digits=6):
    """The report's number format: `digits` significant digits (Python's 'g')."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return format(value, f".{digits}g")
