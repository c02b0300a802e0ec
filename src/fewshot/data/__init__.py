"""Data: labelled image sets, episode sampling, and the Omniglot / MNIST / folder loaders."""
from fewshot.data.dataset import Episode, ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.data.sources import DATASETS, data_root, describe_datasets, load_splits

__all__ = ["DATASETS", "Episode", "EpisodeSampler", "ImageDataset", "data_root", "describe_datasets", "load_splits"]
