"""Model and dataset initializers: fetch what a job needs before training starts."""
