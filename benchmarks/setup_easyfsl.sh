#!/usr/bin/env bash
# Build the isolated environment for the easyfsl 1.5.0 baseline: <repo>/.bench-venv
#
#   benchmarks/setup_easyfsl.sh           create it, or complete/check an existing one (idempotent)
#   benchmarks/setup_easyfsl.sh --fresh   delete .bench-venv first and rebuild it from scratch
#
# Run it from the environment fewshot is installed in (an activated virtual environment, or the
# system's Python): `python`, or $PYTHON, is that environment's interpreter. The venv sees its
# site-packages through a .pth file, after its own, so it uses the project's CPU torch
# (2.13.0+cpu). Everything that could pull in another torch is installed with --no-deps:
#   easyfsl==1.5.0      pure Python; needs torch, torchvision, pandas, matplotlib, tqdm
#   torchvision==0.28.0 the only release pinned to torch 2.13.0; on PyPI it is a CUDA build
#                       whose compiled ops cannot load against CPU torch (see easyfsl_baseline.py)
#   pandas==3.1.1       easyfsl imports it at module level; its deps (numpy, python-dateutil)
#                       come from the project's environment
# matplotlib and tqdm also come from the project's environment.
# easyfsl and torchvision are never added to the fewshot project's dependencies.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.bench-venv"
PYTHON="${PYTHON:-python}"
PACKAGES=(easyfsl==1.5.0 torchvision==0.28.0 pandas==3.1.1)

if [[ "${1:-}" == "--fresh" ]]; then
    echo "removing $VENV"
    rm -rf "$VENV"
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--fresh]" >&2
    exit 2
fi

# The project's interpreter must already have the CPU torch the baseline is meant to run on.
if ! PROJECT_TORCH="$("$PYTHON" -c 'import torch; print(torch.__version__)')"; then
    echo "error: $PYTHON cannot import torch: activate the environment fewshot is installed in" \
         "(see the README's Install), or set PYTHON to its interpreter" >&2
    exit 1
fi
echo "project interpreter: $("$PYTHON" -c 'import sys; print(sys.executable)') (torch $PROJECT_TORCH)"
if [[ "$PROJECT_TORCH" != *+cpu ]]; then
    echo "warning: the project's torch ($PROJECT_TORCH) is not a +cpu build" >&2
fi

if [[ -x "$VENV/bin/python" ]]; then
    echo "reusing $VENV"
else
    rm -rf "$VENV"
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    # venv seeds an old setuptools that would shadow the project's one, which torch asks for (>=77).
    "$VENV/bin/python" -m pip uninstall -q -y setuptools || true
fi

# The project's site-packages, with their own .pth files (the editable fewshot), after the venv's.
VENV_SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
"$PYTHON" -c '
import site, sys
from pathlib import Path

dirs = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs if Path(d).is_dir())
Path(sys.argv[1], "fewshot-project-env.pth").write_text(lines)
' "$VENV_SITE"
if ! VENV_TORCH="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')" \
        || [[ "$VENV_TORCH" != "$PROJECT_TORCH" ]]; then
    echo "error: $VENV does not see the project's torch $PROJECT_TORCH; rebuild it with --fresh" >&2
    exit 1
fi

# --no-deps: pip must never resolve (and replace) torch. Already-installed pins are no-ops.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "${PACKAGES[@]}"

# Checks: torch is still the project's; the baseline module imports and builds a sampler.
VENV_TORCH="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
if [[ "$VENV_TORCH" != "$PROJECT_TORCH" ]]; then
    echo "error: torch in $VENV is $VENV_TORCH, expected the project's $PROJECT_TORCH" >&2
    exit 1
fi
"$VENV/bin/python" -m pip check || echo "warning: pip check reported problems (see above)" >&2
(cd "$REPO/benchmarks" && "$VENV/bin/python" - <<'EOF')
import easyfsl_baseline as b  # first: it applies the torchvision workaround
import easyfsl, torch, torchvision

dataset = b.TensorFewShotDataset(torch.rand(40, 1, 28, 28), torch.arange(4).repeat_interleave(10))
sampler = b.CompatTaskSampler(dataset, n_way=2, n_shot=1, n_query=1, n_tasks=1)
print(f"ok: torch {torch.__version__}, torchvision {torchvision.__version__}, easyfsl {easyfsl.__version__}")
EOF

cat <<EOF

easyfsl environment ready: $VENV
  smoke test (random data, ~1 min):  $VENV/bin/python benchmarks/easyfsl_baseline.py
  from Python (run with $VENV/bin/python, benchmarks/ on sys.path):
      from easyfsl_baseline import train_easyfsl, evaluate_easyfsl
  rebuild from scratch:              benchmarks/setup_easyfsl.sh --fresh
EOF
