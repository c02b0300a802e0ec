#!/usr/bin/env bash
# Mutation testing (mutmut) of the modules behind the README's promises, with the fast tests that cover them.
# Not part of CI: it runs the covering tests once per mutant (tens of minutes on two cores).
#
#   bash benchmarks/mutation.sh                      # every module below
#   bash benchmarks/mutation.sh data/episodes.py     # some of them (paths under src/fewshot/)
#
# It mutates a snapshot of the last commit (git archive HEAD) in a temporary folder, so edits in the
# working tree are neither mutated nor disturbed; the summary and the surviving mutants' diffs are
# written to ${MUTATION_OUT:-mutation-results}/ in the repository root.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
out=${MUTATION_OUT:-$root/mutation-results}
modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  modules=(training/trainer.py training/checkpoint.py training/config.py evaluation/evaluator.py
           data/episodes.py data/download.py)
fi
# The fast tests that cover each module. mutmut runs for each mutant the tests that called its function
# in-process, so tests/test_resume.py (the CLI in subprocesses) is left out; run it by hand on a mutant.
tests=(tests/test_trainer.py tests/test_safe_loading.py tests/test_evaluator.py
       tests/test_intervals.py tests/test_bf16.py tests/test_episodes.py tests/test_sampling_properties.py
       tests/test_download.py tests/test_checksums.py tests/test_error_paths.py)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" archive HEAD | tar -x -C "$work"
cd "$work"
only=$(printf '"src/fewshot/%s", ' "${modules[@]}")
existing=()
for t in "${tests[@]}"; do [ -f "$t" ] && existing+=("\"$t\""); done
selection=$(IFS=,; echo "${existing[*]}")
cat >> pyproject.toml <<TOML

[tool.mutmut]
source_paths = ["src"]
only_mutate = [${only%, }]
pytest_add_cli_args_test_selection = [${selection}]
TOML
export OMP_NUM_THREADS=1 PYTHONPATH="$work/mutants/src"
mutmut run --max-children "${MUTATION_JOBS:-2}" || true
mkdir -p "$out"
mutmut results --all true > "$out/results.txt" 2>&1 || true
: > "$out/survivors.diff"
for name in $(grep -E ': survived$' "$out/results.txt" | sed 's/: survived$//' | tr -d ' '); do
  mutmut show "$name" >> "$out/survivors.diff" 2>&1 || true
done
for status in killed survived timeout suspicious "no tests" "not checked" skipped; do
  printf '%-12s %s\n' "$status" "$(grep -c ": $status\$" "$out/results.txt" || true)"
done | tee "$out/summary.txt"
