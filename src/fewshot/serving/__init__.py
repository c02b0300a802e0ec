"""The HTTP service and its drawing page: ``fewshot serve`` (see :mod:`fewshot.serving.app`)."""
from fewshot.serving.app import Settings, create_app, open_gallery

__all__ = ["Settings", "create_app", "open_gallery"]
