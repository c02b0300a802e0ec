"""fewshot: recognise classes never seen in training from one or a few examples."""
__version__ = "0.1.0"
