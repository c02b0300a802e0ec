"""Methods by name: ``METHODS.get("protonet")``."""
from fewshot.registry import Registry

METHODS: Registry = Registry("method")
