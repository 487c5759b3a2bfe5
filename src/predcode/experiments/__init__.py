"""Experiment machinery: data handling, training loops, checkpoints, metrics and analysis."""
