"""The HTTP service and its drawing page: ``fewshot serve`` (see :mod:`fewshot.serving.app`)."""
from fewshot.serving.app import SETTINGS_ENV, Settings, create_app, open_gallery

__all__ = ["SETTINGS_ENV", "Settings", "create_app", "open_gallery"]
