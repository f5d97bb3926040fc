"""What the model does, and the metrics each kind of model gets.

:class:`PerformanceConfig` is what the evaluator passes to
:func:`~sidecar.performance.compute`; the assembly builds it from the settings
(``SIDECAR_TASK``, ``SIDECAR_POSITIVE_LABEL``, ``SIDECAR_CLASSES``,
``SIDECAR_RANKING_K``, ``SIDECAR_PERF_MIN_LABELS``). The tasks, their metric
names and the check of the classes live in :mod:`sidecar.syntax.performance`,
so the settings validate them without loading numpy; they are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.syntax.performance import METRICS, TASKS, Task, check_classes

__all__ = ["Task", "TASKS", "METRICS", "PerformanceConfig"]


@dataclass(frozen=True)
class PerformanceConfig:
    """How to score one model's labelled predictions.

    - ``positive_label``: set for a binary classifier; precision, recall, F1
      and AUC are then for this class against all others. Unset: macro
      averages over the classes.
    - ``classes``: the class of each position of the score vectors
      (``scores[i]`` is the probability of ``classes[i]``). Unset: the labels
      must be the integers ``0..k-1``, position ``i`` being class ``i``.
    - ``ranking_k``: the cut-off of NDCG@k, MRR@k and MAP@k.
    - ``min_labels``: below this many labelled samples a metric reports
      ``"insufficient_labels"`` instead of a value.

    Class values are compared by their text (:func:`~sidecar.performance.class_key`),
    so ``1``, ``1.0`` and ``"1"`` are the same class.

    Usage::

        config = PerformanceConfig(task="classification", positive_label="fraud", min_labels=100)
        config = PerformanceConfig(task="classification", classes=("cat", "dog", "bird"))
        config = PerformanceConfig(task="ranking", ranking_k=5)
    """

    task: Task = "classification"
    positive_label: str | None = None
    classes: tuple[str, ...] | None = None
    ranking_k: int = 10
    min_labels: int = 100

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.ranking_k < 1:
            raise ValueError(f"ranking_k must be at least 1, got {self.ranking_k}")
        if self.min_labels < 1:
            raise ValueError(f"min_labels must be at least 1, got {self.min_labels}")
        check_classes(self.classes, self.positive_label)
