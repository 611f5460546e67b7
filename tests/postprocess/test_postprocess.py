#!/usr/bin/python3
"""End-to-end test of postprocess/: runs two real tiny opd jobs (teacher and student pretraining,
then a short distillation with evaluations), then plot_run, compare_runs and report on them.
Checks that every expected figure exists and is a non-empty PNG, and that every number in the
report's tables equals the metrics file's (read here independently, from metrics.h5 and from
metrics.jsonl, which must agree) or results.json's, exactly.

Usage: test_postprocess.py OPD_BINARY. Exits 77 (ctest's skip) when matplotlib is missing.
"""

import csv
import functools
import importlib.util
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

SKIP = 77
HERE = Path(__file__).resolve().parent
TOOLS = HERE.parent.parent / "postprocess"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A teacher that learns some 1-digit additions (so gap recovery is defined), a barely trained
# student, and 10 distillation steps with evaluations at steps 4 and 8 (the final one goes to
# results.json only).
JOB = """
[run]
dir = "run_a"
seed = 5

[model.teacher]
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 64
max_seq_len = 48
[model.student]
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32
max_seq_len = 48

[[stage]]
name = "teacher"
kind = "pretrain"
model = "teacher"
data = "train.jsonl"
steps = 150
batch_size = 16
seq_len = 40
[stage.optim]
lr = 1e-2
warmup = 10

[[stage]]
name = "student"
kind = "pretrain"
model = "student"
data = "train.jsonl"
steps = 3
batch_size = 8
seq_len = 40

[[stage]]
name = "distill"
kind = "distill"
model = "@student"
teacher = "@teacher"
data = "train.jsonl"
steps = 10
prompts_per_step = 3
samples_per_prompt = 2
signal = "topk"
topk = 4
log_every = 5
[stage.rollout]
max_new_tokens = 12
[stage.objective]
kind = "pg_topk"
[stage.eval]
data = "test.jsonl"
every = 4
limit = 20
max_new_tokens = 12
"""

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stdout}\n"
                 f"{r.stderr}")
    return r.stdout


def is_png(path):
    """A PNG file with a header and non-zero width and height (the IHDR chunk)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    if len(data) < 33 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return False
    w, h = struct.unpack(">II", data[16:24])
    return w > 0 and h > 0 and len(data) > 1000


@functools.lru_cache(maxsize=None)
def read_metrics(stage_dir):
    """{metric: [(step, value)]} from metrics.jsonl; for a distill stage also checks that
    metrics.h5 holds the same float64 values (NaN for null or absent)."""
    rows = [json.loads(l) for l in (stage_dir / "metrics.jsonl").read_text().splitlines() if l]
    cols = {}
    for r in rows:
        for k, v in r.items():
            if k != "step":
                cols.setdefault(k, {})[r["step"]] = v
    h5 = stage_dir / "metrics.h5"
    if h5.exists():
        import h5py
        with h5py.File(h5, "r") as f:
            steps = [int(s) for s in f["step"][...]]
            check(steps == [r["step"] for r in rows], f"{h5}: steps differ from the JSONL's")
            names = set()
            f.visititems(lambda n, o: names.add(n) if isinstance(o, h5py.Dataset) else None)
            names.discard("step")
            check(names == set(cols), f"{h5}: metric names differ from the JSONL's")
            for n in names & set(cols):
                for s, v in zip(steps, f[n][...]):
                    j = cols[n].get(s)
                    same = (j is None and math.isnan(v)) or (j is not None and float(j) == v)
                    check(same, f"{h5}: {n} at step {s}: {v!r} vs JSONL {j!r}")
    return {k: sorted((s, float(v)) for s, v in c.items() if v is not None)
            for k, c in cols.items()}


class Cells(HTMLParser):
    """The report's table cells: [(table, run, stage, metric, data-value, data-step, text)]."""

    def __init__(self):
        super().__init__()
        self.row, self.cell, self.cells, self.imgs = None, None, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-table" in a:
            self.row = a
        elif tag == "td" and self.row is not None and "data-metric" in a:
            self.cell = [self.row["data-table"], self.row["data-run"], self.row["data-stage"],
                         a["data-metric"], a.get("data-value"), a.get("data-step"), ""]
        elif tag == "img":
            self.imgs.append(a["src"])

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[6] += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.cells.append(tuple(self.cell))
            self.cell = None
        elif tag == "tr":
            self.row = None


def check_report(out, runs):
    """runs: {label: run directory}."""
    page = out / "report.html"
    check(page.is_file() and page.stat().st_size > 0, "report.html written")
    p = Cells()
    p.feed(page.read_text(encoding="utf-8"))
    for src in p.imgs:
        check(is_png(out / src), f"report image {src} is a PNG")
    check(len(p.imgs) >= 2 * 3, "report shows figures of every stage")
    seen = set()
    for table, run, stage, metric, value, step, text in p.cells:
        sdir = runs[run] / stage
        seen.add((table, run, stage, metric))
        if table == "outcome":
            want = json.loads((sdir / "results.json").read_text()).get(metric)
            if want is None:
                check(value is None and text == "—", f"{run}/{stage} {metric}: null shown as —")
                continue
        else:
            series = read_metrics(sdir).get(metric) if metric != "step" else None
            if metric == "step":
                want = json.loads((sdir / "metrics.jsonl").read_text().splitlines()[-1])["step"]
            elif not series:
                check(value is None and text == "—", f"{run}/{stage} {metric}: absent shown as —")
                continue
            else:
                last_step, want = series[-1]
                check(step == str(last_step), f"{run}/{stage} {metric}: step {step} != {last_step}")
        check(value is not None and float(value) == float(want),
              f"{run}/{stage} {metric} ({table}): report {value!r} != file {want!r}")
        shown = format(want, ".6g") if isinstance(want, float) else str(want)
        check(text.startswith(shown), f"{run}/{stage} {metric}: shown {text!r}, want {shown!r}")
    for run in runs:
        for metric in ("loss", "kl_k1", "overlap_ratio", "overlap_mass_student", "grad_norm",
                       "eval_accuracy", "step"):
            check(("final", run, "distill", metric) in seen, f"final table has {run} {metric}")
        for metric in ("accuracy_teacher", "gap_recovery", "accuracy_student_final"):
            check(("outcome", run, "distill", metric) in seen, f"outcome table has {run} {metric}")
        check(("final", run, "teacher", "loss") in seen, f"final table has {run} teacher loss")
    # The CSV holds the same exact values.
    with open(out / "final_numbers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    table = {(c[1], c[2], c[3]): c[4] for c in p.cells if c[0] == "final" and c[4] is not None}
    for r in rows:
        if r["file"] != "results.json":
            check(table.get((r["run"], r["stage"], r["metric"])) == r["value"],
                  f"CSV {r['run']}/{r['stage']} {r['metric']} equals the table's")
    check(len(rows) > 20, "CSV has the numbers")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_postprocess.py OPD_BINARY")
    if importlib.util.find_spec("matplotlib") is None:
        print("SKIP: python3-matplotlib is not installed (tools/setup installs it)")
        return SKIP
    opd = str(Path(sys.argv[1]).resolve())
    env_tmp = tempfile.mkdtemp(prefix="opd_postprocess_")
    os.environ["MPLCONFIGDIR"] = str(Path(env_tmp) / "mpl")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        t = Path(env_tmp)
        run([opd, "data", "arith", "--out", "train.jsonl", "--count", "400", "--seed", "1",
             "--max-digits", "1", "--scratchpad", "none"], t)
        run([opd, "data", "arith", "--out", "test.jsonl", "--count", "40", "--seed", "2",
             "--max-digits", "1", "--scratchpad", "none"], t)
        (t / "job.toml").write_text(JOB)
        run([opd, "run", "job.toml"], t)
        run([opd, "run", "job.toml", "--set", "run.dir=run_b", "--set", "run.seed=6"], t)
        a, b = t / "run_a", t / "run_b"
        for d in (a, b):
            check((d / "distill" / "DONE").is_file(), f"{d.name} finished")
        # Legends and table rows use a job's name when it has one (opd's job files carry none
        # yet, so it is added to the saved copy here).
        named = t / "named"
        shutil.copytree(b, named)
        (named / "job.toml").write_text('name = "seed six"\n' + (b / "job.toml").read_text())
        py = "/usr/bin/python3"

        # plot_run on a run directory: a figure per logged metric of each stage, the panel and
        # the heat map of the distill stage.
        out = t / "plots"
        listed = run([py, TOOLS / "plot_run", a, "--out", out], t).split()
        for stage in ("teacher", "student", "distill"):
            for metric, series in read_metrics(a / stage).items():
                if series:
                    f = out / stage / f"{metric}.png"
                    check(is_png(f), f"plot_run wrote {f}")
                    check(str(f) in listed, f"plot_run listed {f}")
        for name in ("panel.png", "entropy_by_position.png"):
            check(is_png(out / "distill" / name), f"plot_run wrote distill/{name}")
        check(all(is_png(f) for f in listed), "plot_run lists only PNGs")
        # ... and on one stage folder.
        out1 = t / "plots_stage"
        run([py, TOOLS / "plot_run", a / "distill", "--out", out1, "--smooth", "3"], t)
        check(is_png(out1 / "distill" / "panel.png"), "plot_run on a stage folder: panel")
        check(is_png(out1 / "distill" / "kl_k1.png"), "plot_run on a stage folder: kl_k1")

        # compare_runs: overlays per stage, panel of the distill stages; --metrics selects.
        cmp = t / "compare"
        run([py, TOOLS / "compare_runs", a, named, "--out", cmp], t)
        for f in ("distill/panel.png", "distill/kl_k1.png", "teacher/loss.png",
                  "student/grad_norm.png"):
            check(is_png(cmp / f), f"compare_runs wrote {f}")
        cmp2 = t / "compare_some"
        run([py, TOOLS / "compare_runs", a / "distill", b / "distill", "--out", cmp2,
             "--metrics", "kl_k1", "overlap_ratio"], t)
        got = sorted(p.name for p in (cmp2 / "distill").iterdir())
        check(got == ["kl_k1.png", "overlap_ratio.png", "panel.png"],
              f"compare_runs --metrics wrote {got}")

        # report: figures and tables whose numbers equal the files'.
        rep = t / "report"
        run([py, TOOLS / "report", a, named, "--out", rep], t)
        check_report(rep, {"run_a": a, "seed six": named})
    finally:
        if failures or os.environ.get("OPD_KEEP_TEST_DIR"):
            print(f"test directory kept: {env_tmp}", file=sys.stderr)
        else:
            shutil.rmtree(env_tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("postprocess: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
