"""Scoring a model on a held-out file (generation and classification) and talking to it.

``metrics``: the scores (pure Python). ``prompts``: held-out rows to prompts, rendered by the
trainer's own format code. ``generation``: batched greedy generation with left padding, and
streamed or sampled replies. ``scoring``: a report from a model and a file, in one process or
split over the ranks of a job. ``models``: which model a path or job output stands for, loaded.
"""
