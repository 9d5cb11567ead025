"""Dataset reading, formatting, tokenization and batching for the LLM Trainer."""
