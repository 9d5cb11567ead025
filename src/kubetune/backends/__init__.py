"""Backends run job specs: ``local`` (processes on this machine) and ``kubernetes`` (TrainJob objects)."""
