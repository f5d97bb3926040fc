"""Delayed labels: the join and live performance, the labels API body, their metrics, retraining."""
