"""The model a gallery is bound to: its weights, its fingerprint, its embedding and its rule.

A gallery keeps a copy of its model's weights and config (a few hundred kilobytes for a
Conv-4), so it opens without the run directory it was created from; the fingerprint (a hash
of the weights and of the config fields that shape the network) says which model it is.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from fewshot.errors import FewShotError
from fewshot.gallery.images import STROKE_DATASETS, Preprocessing
from fewshot.methods import METHODS, Method
from fewshot.nets.inference import fold_batch_norm
from fewshot.runs import MODEL_FILE, build_method, config_yaml, load_config
from fewshot.training.config import RunConfig

EMBED_BATCH = 512
_MODEL_FIELDS = ("method", "options", "encoder", "encoder_options", "image_size", "channels")


def gallery_methods() -> list[str]:
    """The methods that can serve a gallery, for error messages."""
    return [name for name in METHODS if METHODS.get(name).gallery_rule is not None]


class GalleryModel:
    """A trained method in eval mode, ready to embed model inputs for a gallery.

    Example:
        >>> model = GalleryModel.from_run("runs/proto")
        >>> model.embed(pixels).shape  # uint8 [n, 1, 28, 28] -> float32 [n, 64]
        (3, 64)
    """

    def __init__(self, config: RunConfig, weights: bytes, source: str, device: torch.device | str = "cpu") -> None:
        self.config, self.weights, self.source = config, weights, source
        self.device = torch.device(device)
        try:
            state = load_safetensors(weights)
        except (SafetensorError, ValueError) as error:
            raise FewShotError(f"the weights of {source} are not readable safetensors ({error})") from None
        method = build_method(config)
        try:
            method.load_state_dict(state)
        except RuntimeError as error:
            raise FewShotError(f"the weights of {source} do not fit its config: {str(error)[:300]}") from None
        self.method: Method = method.to(self.device).eval()
        rule = self.method.gallery_rule
        if rule is None:
            raise FewShotError(
                f"a {config.method} model cannot serve a gallery: {self.method.gallery_refusal}. Train one of the "
                f"methods that can: {', '.join(gallery_methods())} (siamese with --variant koch-l1 or "
                f"euclidean-contrastive)"
            )
        self.rule: str = rule
        self.fingerprint = fingerprint(config, weights)
        self.preprocessing = Preprocessing(config.image_size, config.channels, config.dataset in STROKE_DATASETS)
        self._embedder = fold_batch_norm(self.method).to(memory_format=torch.channels_last)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: torch.device | str = "cpu") -> GalleryModel:
        """The model of a run directory written by ``fewshot train``."""
        config = load_config(run_dir)
        path = Path(run_dir) / MODEL_FILE
        try:
            weights = path.read_bytes()
        except FileNotFoundError:
            raise FewShotError(f"{path} not found: the run has no trained model yet (train it, or resume it)") from None
        return cls(config, weights, str(run_dir), device)

    @classmethod
    def from_stored(cls, config_text: str, weights: bytes, source: str,
                    device: torch.device | str = "cpu") -> GalleryModel:
        """The model as a gallery stores it: config YAML and safetensors bytes."""
        config = RunConfig.from_dict(yaml.safe_load(config_text), source=source)
        return cls(config, weights, source, device)

    @property
    def config_text(self) -> str:
        return config_yaml(self.config)

    @torch.inference_mode()
    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Embeddings (float32 ``[n, d]``) of model inputs (uint8 ``[n, c, s, s]``), in float32 throughout."""
        out = []
        for start in range(0, len(pixels), EMBED_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(pixels[start:start + EMBED_BATCH])).to(self.device)
            images = batch.float().div_(255.0).contiguous(memory_format=torch.channels_last)
            out.append(self._embedder.embed_support(images).float().cpu())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(out).numpy()

    @property
    def dim(self) -> int:
        return int(self.method.encoder.out_features)

    def describe(self) -> str:
        options = f" {self.config.options}" if self.config.options else ""
        return f"{self.config.method}{options} ({self.source}, fingerprint {self.fingerprint[:12]})"


def fingerprint(config: RunConfig, weights: bytes) -> str:
    """SHA-256 of the weights and of the config fields that define the network."""
    fields = config.to_dict()
    digest = hashlib.sha256(weights)
    digest.update(json.dumps({k: fields[k] for k in _MODEL_FIELDS}, sort_keys=True).encode())
    return digest.hexdigest()
