"""Package a trained Omniglot run as the model shipped in ``fewshot.pretrained``, calibrated for unknowns.

Copies the run's weights and config (with no data directory) into
``src/fewshot/pretrained/omniglot_conv4/``, then chooses its unknown threshold with
``Gallery.calibrate`` on the evaluation alphabets, which the run never trained on (20-way
1-shot galleries, 5 characters held out, 1% false accepts, 600 episodes), and writes it as
``calibration.json``. Prints one JSON line: the size of the files and the calibration's figures.

    python benchmarks/package_model.py --run runs/proto --data-dir $FEWSHOT_DATA
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import yaml

from fewshot.data.sources import load_splits
from fewshot.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from fewshot.gallery import Gallery
from fewshot.pretrained import CALIBRATION_FILE, DEFAULT_MODEL, model_dir
from fewshot.runs import CONFIG_FILE, MODEL_FILE

WAY, SHOT, TARGET = 20, 1, 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA"))
    args = parser.parse_args()
    target = Path(__file__).resolve().parents[1] / "src" / "fewshot" / "pretrained" / DEFAULT_MODEL
    config = yaml.safe_load((Path(args.run) / CONFIG_FILE).read_text())
    config["data_dir"] = None
    atomic_write_text(target / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    atomic_write_bytes(target / MODEL_FILE, (Path(args.run) / MODEL_FILE).read_bytes())
    (target / CALIBRATION_FILE).unlink(missing_ok=True)
    assert model_dir() == target, f"fewshot is imported from {model_dir()}, not this checkout"
    test = load_splits("omniglot", "lake", data_dir=args.data_dir, image_size=config["image_size"],
                       channels=config["channels"])["test"]
    with tempfile.TemporaryDirectory() as work, Gallery.create(Path(work) / "g.gallery") as gallery:
        calibration = gallery.calibrate(test, target=TARGET, way=WAY, shot=SHOT, episodes=600, progress=True)
    atomic_write_json(target / CALIBRATION_FILE, calibration.to_dict())
    sizes = {p.name: p.stat().st_size for p in sorted(target.iterdir())}
    print(json.dumps({"benchmark": "package_model", "run": args.run, "files": sizes, "calibration": calibration.to_dict()}))


if __name__ == "__main__":
    main()
