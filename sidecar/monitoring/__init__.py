"""Data monitoring: the evaluator over drift and quality, the learned reference, their metrics."""
