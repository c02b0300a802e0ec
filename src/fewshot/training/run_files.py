"""The files of a run directory, named here so that the trainer writes them and :mod:`fewshot.runs` reads them.

Layout of ``RUN/``:
    config.yaml        the resolved :class:`~fewshot.training.config.RunConfig`
    model.safetensors  the weights to use (best on validation, else the last)
    checkpoint.pt      resumable state (weights, optimizer, schedule, RNG, step); tensors only
    metrics.jsonl      one JSON record per logged step and per validation
    evaluation.json    results of ``fewshot evaluate``
"""
CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
EVALUATION_FILE = "evaluation.json"
