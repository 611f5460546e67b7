#!/usr/bin/python3
"""Every job of jobs/paper/ still parses, validates and runs end to end at a tiny size.

usage: test_paper_jobs.py OPD_BINARY

Makes the jobs' data with jobs/paper/make_data.sh into a scratch folder laid out like the
repository (inputs/generated/paper/), then runs each job from there with `opd run` and `--set`
overrides that shrink it: 2 steps per training stage, batches of 4, 2 prompts x 2 samples per
distillation step, evaluations on 4 examples, 4 prompts for teacher sampling. Every stage runs,
so a renamed key, a bad value, a missing data file, a broken "@stage" reference or a model that
cannot load fails the test with opd's one-line message. The checks on each finished run: exit
status 0, a DONE file per stage, results.json for every distill stage with the keys the README
table is filled from. OPD_KEEP_TEST_DIR=1 keeps the scratch folder.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
JOBS = sorted((ROOT / "jobs" / "paper").glob("*.toml"))
TRAINING = {"pretrain", "sft", "distill"}


def shrink(job):
    """The --set overrides that make a job tiny, from its parsed TOML."""
    sets = ["run.dir=runs/" + job.stem]
    with open(job, "rb") as f:
        spec = tomllib.load(f)
    for stage in spec["stage"]:
        name, kind = stage["name"], stage["kind"]
        pre = f"stage.{name}."
        if kind in TRAINING:
            sets += [pre + "steps=2", pre + "log_every=1"]
        if kind in ("pretrain", "sft"):
            sets.append(pre + "batch_size=4")
        if kind == "distill":
            sets += [pre + "prompts_per_step=2", pre + "samples_per_prompt=2"]
            if "eval" in stage:
                sets += [pre + "eval.limit=4", pre + "eval.every=1"]
        if kind == "eval":
            sets.append(pre + "limit=4")
        if kind == "teacher_generate":
            # teacher_generate keeps complete responses only, and a 2-step teacher rarely writes
            # EOS; sampling it near uniformly (temperature 100) ends about a third of the
            # responses with EOS within 48 tokens, so the sft stage after it has data.
            sets += [pre + "limit=4", pre + "samples=8", pre + "temperature=100.0",
                     pre + "top_p=1.0", pre + "max_new_tokens=48", pre + "require_marker=false"]
    return spec, sets


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    opd = os.path.abspath(sys.argv[1])
    if not JOBS:
        sys.exit("no jobs in jobs/paper/")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="opd_paper_"))
    env = dict(os.environ, OPD=opd, OPENBLAS_NUM_THREADS="1")
    failures = []
    try:
        subprocess.run([str(ROOT / "jobs/paper/make_data.sh"),
                        str(scratch / "inputs/generated/paper")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        for job in JOBS:
            spec, sets = shrink(job)
            cmd = [opd, "run", str(job)] + [a for s in sets for a in ("--set", s)]
            r = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
            run_dir = scratch / "runs" / job.stem
            problems = []
            if r.returncode != 0:
                problems.append(f"exit status {r.returncode}: {r.stderr.strip()[-400:]}")
            else:
                for stage in spec["stage"]:
                    d = run_dir / stage["name"]
                    if not (d / "DONE").exists():
                        problems.append(f"stage {stage['name']}: no DONE")
                    if stage["kind"] == "distill":
                        res = json.loads((d / "results.json").read_text())
                        for key in ("accuracy_student_initial", "accuracy_student_final",
                                    "accuracy_teacher", "gap_recovery"):
                            if key not in res:
                                problems.append(f"stage {stage['name']}: results.json lacks {key}")
            print(f"{job.name}: {'ok' if not problems else 'FAILED'} ({len(spec['stage'])} stages)")
            for p in problems:
                print("   ", p)
            if problems:
                failures.append(job.name)
    finally:
        if os.environ.get("OPD_KEEP_TEST_DIR") == "1":
            print("kept", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        sys.exit("failed: " + ", ".join(failures))
    print(f"all {len(JOBS)} jobs of jobs/paper/ ran at tiny size")


if __name__ == "__main__":
    main()
