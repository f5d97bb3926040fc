"""``SIDECAR_TASK``, its metric names, and how ``SIDECAR_CLASSES`` and ``SIDECAR_POSITIVE_LABEL`` fit.

The metrics themselves are computed in :mod:`sidecar.performance`, whose
:class:`~sidecar.performance.PerformanceConfig` runs the same
:func:`check_classes`. The metric names are fixed per task, so the settings
can check ``SIDECAR_BASELINE_<METRIC>`` and the Prometheus collector can bind
its children at start-up.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["Task", "TASKS", "METRICS", "check_classes"]

Task = Literal["classification", "regression", "ranking"]
TASKS: tuple[Task, ...] = get_args(Task)

METRICS: dict[Task, tuple[str, ...]] = {
    "classification": ("accuracy", "precision", "recall", "f1", "auc_roc", "log_loss", "estimated_accuracy"),
    "regression": ("mae", "mse", "rmse", "mape"),
    "ranking": ("ndcg", "mrr", "map"),
}


def check_classes(classes: tuple[str, ...] | None, positive_label: str | None) -> None:
    """Raise ``ValueError`` unless ``classes`` (if given) are two or more distinct values holding ``positive_label``.

    >>> check_classes(("cat", "dog"), "dog")
    >>> check_classes(("cat", "cat"), None)
    Traceback (most recent call last):
    ...
    ValueError: classes must be two or more distinct values, got ['cat', 'cat']
    """
    if classes is None:
        return
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be two or more distinct values, got {list(classes)}")
    if positive_label is not None and positive_label not in classes:
        raise ValueError(f"positive_label {positive_label!r} is not one of the classes")
