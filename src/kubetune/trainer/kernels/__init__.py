"""Speed-ups for the training step that keep the math: packed attention, chunked loss, checkpointing."""
