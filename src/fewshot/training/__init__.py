"""The one trainer shared by every method (trainer.py), its config (config.py) and checkpoints (checkpoint.py)."""
