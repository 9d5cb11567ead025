"""The LLM Trainer: the program every worker runs (``python -m kubetune.trainer``)."""
