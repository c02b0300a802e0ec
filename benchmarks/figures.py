"""Draw the documentation's pictures from the runs recorded in docs/benchmarks.md.

Every benchmark run's JSON line is in docs/benchmarks.md under a heading that names its date and
commit. This script parses those lines and draws, under docs/images/:

- protonet_vs_easyfsl.png: ProtoNet's accuracy at 10 and 30 training minutes (Lake split: the
  recipe of commits d2518d5 and 6679140, and the config's recipe of commit d4ead8b) beside every
  recorded easyfsl 1.5.0 run, on the same CPU;
- methods_5way_20way.png: the 5-way and 20-way, 1-shot and 5-shot figures of every method, the
  runs behind the results table (docs/results.md);
- meta_learning_hour.png: what an hour of training on one thread gives each meta-learning method
  (Vinyals split, 5-way and 20-way, 1-shot and 5-shot, the queries normalised by the support's
  statistics) beside Baseline++ and the paper's transductive MAML figures;
- mann_by_instance.png: the MANN recipe's accuracy by instance with 1 and 4 views (commit a6b6b74),
  the paper's LRUA (commit 73b5a41) and the LSTM baseline (commit c8d5514), Santoro et al.'s points;
- gallery_latency.png: the gallery's latency against its size (commit 84b3d45).

With ``--umap-run RUN`` it also redraws docs/umap_mnist.png from a trained run (``fewshot embed``,
then ``fewshot plot umap``); it never trains.

    python benchmarks/figures.py [--umap-run runs/triplet_mnist]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot.cli.main import main as fewshot_main
from fewshot.errors import FewShotError
from fewshot.plots.charts import Panel, Series, draw_panels

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")
LABELS = {"5w1s": "5-way 1-shot", "5w5s": "5-way 5-shot", "20w1s": "20-way 1-shot", "20w5s": "20-way 5-shot"}
INSTANCES = ("1st", "2nd", "3rd", "4th", "5th", "10th")


@dataclass
class Record:
    """One recorded JSON line and the headings it sits under."""

    section: str
    run: str
    data: dict[str, Any]


def read_records(log: Path) -> list[Record]:
    """Every JSON line inside a fenced block of ``log``, with its ``##`` and ``###`` headings."""
    records, section, run, fenced = [], "", "", False
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            section, run = line[3:], ""
        elif not fenced and line.startswith("### "):
            run = line[4:]
        elif fenced and line.startswith("{"):
            records.append(Record(section, run, json.loads(line)))
    return records


def under(records: list[Record], heading: str, where: Callable[[dict], bool], what: str,
          count: int = 1) -> list[Record]:
    """The ``count`` records whose headings contain ``heading`` and that satisfy ``where`` (``what`` names them)."""
    found = [r for r in records if heading in f"{r.section} {r.run}" and where(r.data)]
    if len(found) != count:
        raise FewShotError(f"expected {count} recorded {what} under a heading with {heading!r}, found {len(found)}; "
                           f"docs/benchmarks.md changed, update benchmarks/figures.py")
    return found


def pick(records: list[Record], benchmark: str, heading: str = "", where: Callable[[dict], bool] = lambda d: True,
         count: int = 1) -> list[Record]:
    """The ``count`` records of ``benchmark`` whose headings contain ``heading`` and that satisfy ``where``."""
    return under(records, heading, lambda d: d.get("benchmark") == benchmark and where(d), f"{benchmark} run(s)",
                 count)


def protonet_vs_easyfsl(records: list[Record], out: Path) -> None:
    lake = lambda d: d["split"] == "lake"
    fewshot_runs = [("the recipe, seed 0 (d2518d5)", pick(records, "omniglot_protonet", "d2518d5", lake)[0]),
                    ("the recipe, seed 1 (6679140)", pick(records, "omniglot_protonet", "6679140", lake)[0]),
                    ("the config's recipe (d4ead8b)", pick(records, "omniglot_protonet", "d4ead8b", lake)[0])]
    easyfsl = sorted((r.data["easyfsl"] for r in records
                      if r.data.get("benchmark") == "omniglot_protonet" and "easyfsl" in r.data),
                     key=lambda e: e["minutes"])
    panels = []
    for setting in ("5w1s", "20w1s"):
        series = []
        for label, record in fewshot_runs:
            points = [record.data["fewshot"][when] for when in ("early", "final")]
            series.append(Series(f"fewshot ProtoNet, {label}", [p[setting]["acc"] for p in points],
                                 x=[p["minutes"] for p in points], errors=[p[setting]["ci95"] for p in points]))
        series.append(Series(f"easyfsl 1.5.0 ProtoNet ({len(easyfsl)} runs)", [e[setting]["acc"] for e in easyfsl],
                             x=[e["minutes"] for e in easyfsl], errors=[e[setting]["ci95"] for e in easyfsl],
                             style="s"))
        panels.append(Panel(f"Omniglot, Lake split, {LABELS[setting]}", "training minutes (2 CPU cores)",
                            "accuracy (%), 95% CI", series))
    draw_panels(panels, out, size=(12, 4.5))


def method_bars(records: list[Record], out: Path) -> None:
    def figures(run: dict, prefix: str) -> list[float | None]:
        return [run["figures"].get(f"{prefix}: {LABELS[s]}", {}).get("mean") for s in SETTINGS]

    packaged = pick(records, "method_figures", "2c98a04",
                    lambda d: "mahalanobis: 20-way 1-shot within-alphabet" not in
                    d["runs"]["src/fewshot/pretrained/omniglot_conv4"]["figures"])[0]
    packaged = packaged.data["runs"]["src/fewshot/pretrained/omniglot_conv4"]
    easyfsl = pick(records, "omniglot_protonet", "d4ead8b")[0].data["easyfsl"]
    siamese = pick(records, "siamese_omniglot", "2315361 (the figures to quote)")[0].data["omniglot"]
    triplet = pick(records, "triplet_omniglot", "Triplet losses on Omniglot",  # the recorded run, not the retrained
                   lambda d: "batch_hard" in d["results"] and d["finished"].startswith("2026-11-24"))[0]
    triplet = triplet.data["results"]["batch_hard"]
    vinyals = pick(records, "omniglot_protonet", "d2518d5", lambda d: d["split"] == "vinyals")[0]
    vinyals = vinyals.data["fewshot"]["final"]
    matching = pick(records, "method_figures", "3b68cf8", lambda d: "runs/matching_fce_vinyals" in d["runs"])[0]
    plain = pick(records, "method_figures", "3b68cf8", lambda d: "runs/matching_vinyals" in d["runs"])[0]
    lake = [Series("ProtoNet, the packaged model", figures(packaged, "own")),
            Series("its embedding, Mahalanobis head, b = 100", figures(packaged, "mahalanobis")),
            Series("easyfsl 1.5.0 ProtoNet, 10 min", [easyfsl.get(s, {}).get("acc") for s in SETTINGS]),
            Series("Siamese, Koch's L1", [100 * siamese[LABELS[s]]["accuracy"] if LABELS[s] in siamese else None
                                          for s in SETTINGS]),
            Series("triplet margin + batch-hard", [triplet.get(s, {}).get("acc") for s in SETTINGS])]
    vin = [Series("ProtoNet", [vinyals[s]["acc"] for s in SETTINGS]),
           Series("Matching Networks, FCE", figures(matching.data["runs"]["runs/matching_fce_vinyals"], "own")),
           Series("Matching Networks, no FCE", figures(plain.data["runs"]["runs/matching_vinyals"], "own")),
           Series("Relation Networks", figures(matching.data["runs"]["runs/relation_vinyals"], "own"))]
    groups = [LABELS[s] for s in SETTINGS]
    draw_panels([Panel("Omniglot, Lake split", "", "accuracy (%)", lake, groups, ylim=(88, 100)),
                 Panel("Omniglot, Vinyals split", "", "accuracy (%)", vin, groups, ylim=(88, 100))],
                out, size=(14, 5), title="Every method on the same 1,000 test episodes per setting")


def evaluation(records: list[Record], heading: str, key: str = "omniglot/vinyals/test") -> dict[str, Any]:
    """The one recorded ``fewshot evaluate`` result ``key`` under a heading containing ``heading``."""
    return under(records, heading, lambda d: key in d, f"evaluation {key!r}")[0].data[key]


def meta_learning_hour(records: list[Record], out: Path) -> None:
    def plain(heading: str, key: str = "omniglot/vinyals/test") -> dict[str, float]:
        result = evaluation(records, heading, key)
        return {s: 100 * result[LABELS[s]]["mean"] for s in SETTINGS if LABELS[s] in result}

    transfer = pick(records, "transfer_omniglot", "52a8bee")[0].data["results"]["nearest_mean"]
    methods = [("MAML", plain("MAML, second order, 5-way 1-shot, Vinyals") |
                plain("MAML, second order, 20-way 1-shot, Vinyals")),
               ("first-order MAML", plain("First-order MAML, 5-way 1-shot, Vinyals") |
                plain("First-order MAML, 20-way 1-shot, Vinyals")),
               ("MAML++ (LSLR, MSL, cosine)", plain("MAML++, 20-way 1-shot, Vinyals")),
               ("ANIL, 25 test steps", plain("Second attempts for ANIL", "omniglot/vinyals/test 25 test steps")),
               ("Meta-SGD, 3 test steps", plain("Second attempts for ANIL", "omniglot/vinyals/test 3 test steps")),
               ("Meta-LSTM", plain("Meta-LSTM, 5-way 1-shot, Vinyals")),
               ("Baseline++ (transfer)", {s: transfer[s]["acc"] for s in SETTINGS}),
               ("Finn et al. 2017, MAML, transductive", dict(zip(SETTINGS, (98.7, 99.9, 95.8, 98.9))))]
    series = [Series(label, [figures.get(s) for s in SETTINGS]) for label, figures in methods]
    draw_panels([Panel("Omniglot, Vinyals split, 1,000 test episodes per setting", "", "accuracy (%)", series,
                       [LABELS[s] for s in SETTINGS], ylim=(70, 100))], out, size=(14, 5),
                title="Meta-learning: an hour of training on one CPU thread each")


def mann_by_instance(records: list[Record], out: Path) -> None:
    x = [int(k[:-2]) for k in INSTANCES]
    recipe = pick(records, "mann_omniglot", "a6b6b74", lambda d: d["seed"] == 2)[0].data
    model = recipe["models"]["mann_lrua_5"]
    paper_lrua = pick(records, "mann_omniglot", "73b5a41", lambda d: d["lr"] == 0.002 and d.get("write") is None
                      and d["max_rotation"] == 10.0)[0].data["models"]["mann_lrua_5"]
    lstm = pick(records, "mann_omniglot", "c8d5514", lambda d: "lstm_5" in d["models"])[0].data["models"]["lstm_5"]

    def line(label: str, result: dict, style: str = "o-") -> Series:
        return Series(label, [100 * result["accuracy"][k] for k in INSTANCES], x=x,
                      errors=[100 * result["ci95"][k] for k in INSTANCES], style=style)

    n = recipe["test_episodes"]
    series = [line(f"MANN recipe (a6b6b74), 4 views, {n:,} episodes", model["views"], "o--"),
              line(f"MANN recipe (a6b6b74), 1 view, {n:,} episodes", model),
              line("MANN, the paper's LRUA (73b5a41), 1,000 episodes", paper_lrua),
              line("LSTM baseline (c8d5514), 1,000 episodes", lstm),
              Series("Santoro et al. 2016, MANN", [100 * model["paper"][k] for k in ("2nd", "10th")], x=[2, 10],
                     style="k*"),
              Series("Santoro et al. 2016, LSTM", [100 * lstm["paper"][k] for k in ("2nd", "10th")], x=[2, 10],
                     style="kx")]
    draw_panels([Panel("Omniglot, 5 classes, 60 minutes on one CPU thread", "instance (appearance of the class)",
                       "accuracy (%), 95% CI", series, ylim=(20, 100))], out, size=(8, 5))


def gallery_latency(records: list[Record], out: Path) -> None:
    sizes = pick(records, "gallery_scale", "84b3d45")[0].data["sizes"]
    x = [sizes[k]["examples"] for k in sorted(sizes, key=int)]

    def line(label: str, key: str, quantile: str, style: str) -> Series:
        return Series(label, [sizes[k][key][quantile] for k in sorted(sizes, key=int)], x=x, style=style)

    series = [line("recognise one PNG, nearest example, p50", "recognise_nearest_example", "p50_ms", "o-"),
              line("recognise one PNG, nearest example, p99", "recognise_nearest_example", "p99_ms", "o--"),
              line("recognise one PNG, nearest prototype, p50", "recognise_nearest_prototype", "p50_ms", "s-"),
              line("register one class, p50", "register_one_class", "p50_ms", "^-"),
              line("register one class, p99", "register_one_class", "p99_ms", "^--"),
              line("exact search alone, one query, p50", "exact_flat_search_one_query", "p50_ms", "x:")]
    draw_panels([Panel("Gallery of distorted Omniglot drawings, 2 CPU cores (84b3d45)", "stored examples",
                       "milliseconds", series, log_x=True, log_y=True)], out, size=(8, 5))


def umap_from_run(run: str, out: Path) -> None:
    """Redraw the UMAP of ``run``'s seen and unseen classes with the project's two commands."""
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "embeddings.npz")
        if fewshot_main(["embed", run, "--out", npz]) or fewshot_main(["plot", "umap", npz, "--out", str(out)]):
            raise FewShotError(f"could not draw the UMAP of {run}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the benchmark log to read")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNG files")
    parser.add_argument("--umap-run", help="also redraw docs/umap_mnist.png from this trained run")
    args = parser.parse_args()
    records = read_records(args.log)
    for name, draw in (("protonet_vs_easyfsl", protonet_vs_easyfsl), ("methods_5way_20way", method_bars),
                       ("meta_learning_hour", meta_learning_hour), ("mann_by_instance", mann_by_instance),
                       ("gallery_latency", gallery_latency)):
        draw(records, args.out / f"{name}.png")
        print(args.out / f"{name}.png")
    if args.umap_run:
        umap_from_run(args.umap_run, ROOT / "docs" / "umap_mnist.png")
        print(ROOT / "docs" / "umap_mnist.png")


if __name__ == "__main__":
    main()
