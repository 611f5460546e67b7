#!/usr/bin/env bash
# Makes every data file the jobs of jobs/paper/ read, into inputs/generated/paper/ (git-ignored)
# or the folder given as the first argument: synthetic additions (and a few multiplications)
# written by `opd data arith`. OPD is the opd binary (default: $OPD_BUILD_DIR/opd, else build/opd).
# Takes about a second. Files that exist are kept (delete the folder to remake them).
#   jobs/paper/make_data.sh [OUT_DIR]
#
# Fixed seeds give every file the same content on every machine. Files with the same seed and
# digit range hold the same problems (the format only changes how the response is written), so the
# two teachers of compatibility.toml learn from the same problems in two scratchpad formats.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
OPD="${OPD:-${OPD_BUILD_DIR:-$root/build}/opd}"
out="${1:-$root/inputs/generated/paper}"
mkdir -p "$out"

# gen NAME COUNT SEED MIN_DIGITS MAX_DIGITS SCRATCHPAD [OPS]
gen() {
  local file="$out/$1.jsonl"
  [[ -s "$file" ]] && return 0
  "$OPD" data arith --out "$file" --count "$2" --seed "$3" --min-digits "$4" --max-digits "$5" \
    --scratchpad "$6" --ops "${7:-+}" >/dev/null
}

# Training data (pretraining of students and teachers).
gen add_steps_1to3   30000 101 1 3 steps     # the common task: 1-3-digit additions, step by step
gen add_cols_1to3    30000 101 1 3 columns   # the same problems in the columns format
gen add_steps_1to2   20000 102 1 2 steps     # what a student limited to 2 digits sees
gen add_steps_1to4   30000 109 1 4 steps     # length.toml: up to 4-digit additions

# Distillation prompts (with answers, for rollout accuracy and outcome rewards) and held-out tests.
gen prompts_3        4000 103 3 3 steps      # 3-digit additions
gen test_3            200 104 3 3 steps
gen prompts_1to3     4000 105 1 3 steps      # capability.toml: mixed 1-3-digit additions
gen test_1to3         200 106 1 3 steps
gen prompts_mul      2000 107 1 2 steps '*'  # recovery_prompts.toml: content no teacher trained on
gen prompts_3_gen    2000 108 3 3 steps      # recovery_coldstart.toml: prompts the teacher writes
                                              # answers to (others than the distillation prompts)
gen prompts_2        4000 110 2 2 steps      # length.toml: short responses (2 clauses)
gen test_2            200 111 2 2 steps
gen prompts_4        4000 112 4 4 steps      # length.toml: long responses (4 clauses)
gen test_4            200 113 4 4 steps
echo "data in $out/: $(ls "$out" | wc -l) files"
