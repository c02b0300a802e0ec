"""The ``fewshot`` command line."""
