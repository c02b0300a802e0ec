#!/usr/bin/env bash
# Mutation testing (mutmut) of the modules behind the README's promises, each with the fast tests that cover it.
# Not part of CI: it runs the covering tests once per mutant (about an hour on two cores for every module).
#
#   bash benchmarks/mutation.sh                      # every module below, in this order
#   bash benchmarks/mutation.sh data/episodes.py     # some of them (paths under src/fewshot/)
#   MUTATION_RERUN=1 bash benchmarks/mutation.sh training/trainer.py
#                                                    # only the mutants the module's last run left alive, after
#                                                    # new tests were written against them
#   MUTATION_RERUN=1 MUTATION_ALSO='fewshot.gallery.gallery.xǁGalleryǁcreate__mutmut_*' bash benchmarks/mutation.sh \
#       gallery/gallery.py                           # and every mutant of a function changed since that run (its
#                                                    # mutants are numbered anew): mutmut name patterns
#
# It mutates a snapshot of the last commit (git archive HEAD) in a temporary folder, so edits in the
# working tree are neither mutated nor disturbed. One mutmut run per module, with one child process and
# one thread (MUTATION_JOBS to change the first). Each module's summary, every mutant's status and the
# surviving mutants' diffs go to ${MUTATION_OUT:-mutation-results}/<module>/, and one line per module
# to summary.txt there.
#
# A mutant times out when its tests run past (their measured time + timeout_constant) x 15 seconds of wall
# clock. The measured time leaves out fixture set-up (a trained run), so on a loaded machine mutmut's
# default constant of 1 s turned text-only mutants into timeouts; it is 5 s here (MUTATION_TIMEOUT_CONSTANT).
#
# PYTHONPATH points at mutants/src, created before mutmut starts: tests that run the CLI in a subprocess
# then import the mutated copy too (an editable install would give them /work/main/src). The folder must
# exist when Python starts, or the import system caches it as missing and every test imports the
# un-mutated source, which mutmut reports as "could not find any test case for any mutant".
set -euo pipefail
root=$(git rev-parse --show-toplevel)
out=${MUTATION_OUT:-$root/mutation-results}

# The gallery's own tests train a ProtoNet in a session fixture, which each mutant's run would train again
# (seconds per mutant): the gallery modules get the packaged-model test and tests/test_mutation_kills_gallery.py,
# whose model embeds an image as its pixels.
packaged=tests/test_gallery.py::test_the_packaged_model_is_the_default_and_comes_calibrated
# names, images, model and calibration run the gallery's own tests in full (the fixture's training, about 2 s,
# once per mutant; a surviving mutant costs all of them, about 15 s). gallery.py, with 1,101 mutants, runs the
# fast ones, as the store and the index do, and tests/test_mutation_kills_gallery_api.py.
gallery_tests="tests/test_gallery.py tests/test_gallery_cli.py tests/test_gallery_calibration.py"
declare -A tests_of=(
  [data/download.py]="tests/test_download.py tests/test_checksums.py"
  [data/episodes.py]="tests/test_episodes.py tests/test_sampling_properties.py tests/test_within_alphabet.py tests/test_evaluator.py tests/test_intervals.py"
  [evaluation/evaluator.py]="tests/test_evaluator.py tests/test_intervals.py tests/test_bf16.py tests/test_within_alphabet.py
    tests/test_views.py tests/test_ensemble.py tests/test_refinement.py"
  [training/checkpoint.py]="tests/test_safe_loading.py tests/test_trainer.py tests/test_error_paths.py"
  [training/config.py]="tests/test_config_types.py tests/test_error_paths.py tests/test_trainer.py tests/test_safe_loading.py tests/test_bf16.py"
  [training/trainer.py]="tests/test_trainer.py tests/test_error_paths.py tests/test_safe_loading.py tests/test_bf16.py
    tests/test_trackers.py::test_tensorboard_event_file_holds_the_metrics_and_the_config
    tests/test_trackers.py::test_a_tracker_that_is_not_installed_names_its_extra"
  [gallery/storage.py]="$packaged"
  [gallery/index.py]="tests/test_gallery_calibration.py $packaged"
  [gallery/decision.py]="tests/test_gallery_calibration.py $packaged"
  [gallery/gallery.py]="tests/test_gallery_calibration.py $packaged"
  [gallery/calibration.py]="$gallery_tests"
  [gallery/images.py]="$gallery_tests"
  [gallery/model.py]="$gallery_tests"
  [gallery/names.py]="$gallery_tests"
  [training/trackers.py]="tests/test_trackers.py"
  [training/distributed.py]="tests/test_distributed.py"
)
modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  modules=(data/download.py data/episodes.py evaluation/evaluator.py training/checkpoint.py training/config.py
           training/trainer.py training/trackers.py training/distributed.py gallery/storage.py gallery/index.py
           gallery/decision.py gallery/names.py gallery/images.py gallery/model.py gallery/calibration.py
           gallery/gallery.py)
fi
for module in "${modules[@]}"; do
  [ -n "${tests_of[$module]:-}" ] || { echo "no covering tests listed for $module" >&2; exit 2; }
done

survivors() { grep -E ': survived$' "$1" | sed 's/: survived$//' | tr -d ' ' || true; }  # names in a results file

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" archive HEAD | tar -x -C "$work"
cd "$work"
cp pyproject.toml pyproject.orig.toml
shopt -s nullglob
kills=(tests/test_mutation_kills*.py)
mkdir -p "$out"
echo "# $(git -C "$root" rev-parse --short HEAD) $(date -u +%F) $(nproc) cores" >> "$out/summary.txt"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$work/mutants/src"
for module in "${modules[@]}"; do
  selection=$(printf '"%s", ' ${tests_of[$module]} "${kills[@]}")
  cp pyproject.orig.toml pyproject.toml
  cat >> pyproject.toml <<TOML

[tool.mutmut]
source_paths = ["src"]
only_mutate = ["src/fewshot/$module"]
pytest_add_cli_args_test_selection = [${selection%, }]
process_isolation = "forkserver"
timeout_constant = ${MUTATION_TIMEOUT_CONSTANT:-5}
TOML
  rm -rf mutants
  mkdir -p mutants/src
  dir="$out/${module%.py}"
  mkdir -p "$dir"
  echo "== $module: "${tests_of[$module]}
  results=results.txt names=() label=""
  if [ -n "${MUTATION_RERUN:-}" ]; then
    last="$dir/results.txt"
    [ -f "$dir/rerun.txt" ] && last="$dir/rerun.txt"  # a rerun's survivors, once there has been one
    [ -f "$last" ] || { echo "no earlier run of $module to take the survivors of" >&2; exit 2; }
    names=($(survivors "$last"))
    results=rerun.txt label=" (the ${#names[@]} survivors of its last run, again)"
    read -ra also <<< "${MUTATION_ALSO:-}"  # patterns, kept from the shell's globbing
    [ ${#also[@]} -eq 0 ] || { names+=("${also[@]}"); label="$label, and ${MUTATION_ALSO}"; }
  fi
  mutmut run --max-children "${MUTATION_JOBS:-1}" "${names[@]}" > "$dir/run.log" 2>&1 ||
    echo "mutmut exited $? (see $dir/run.log)"
  if [ ${#names[@]} -gt 0 ]; then
    # a name, or a pattern whose * stands for a mutant's number, then the status
    mutmut results --all true 2>&1 |
      grep -E -f <(printf '%s\n' "${names[@]}" | sed 's/\./\\./g; s/\*/[0-9]+/g; s/^/^ */; s/$/: /') > "$dir/$results" || true
  else
    mutmut results --all true > "$dir/$results" 2>&1 || true
  fi
  : > "$dir/survivors.diff"
  for name in $(survivors "$dir/$results"); do
    mutmut show "$name" >> "$dir/survivors.diff" 2>&1 || true
  done
  count() { grep -c ": $1\$" "$dir/$results" || true; }
  line=$(printf '%-26s mutants %4s  killed %4s  survived %4s  timeout %4s  no-tests %4s  suspicious %4s%s' "$module" \
    "$(grep -cE ': [a-z ]+$' "$dir/$results" || true)" "$(count killed)" "$(count survived)" "$(count timeout)" \
    "$(count 'no tests')" "$(count suspicious)" "$label")
  echo "$line" | tee "$dir/summary.txt"
  echo "$line" >> "$out/summary.txt"
done
