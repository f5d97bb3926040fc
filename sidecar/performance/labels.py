"""What a valid label is, per task, and how class values compare.

:func:`validate_label` is for the HTTP layer: it checks one posted label
before the store keeps it, and its reason names the problem so the client can
fix it. :func:`class_key` is the one rule by which labels, predictions,
``SIDECAR_POSITIVE_LABEL`` and ``SIDECAR_CLASSES`` are matched.

The label of each task:

- **classification**: a class, as a string, an integer or a boolean (a
  float with an integer value, such as ``1.0``, is accepted as that integer,
  because some JSON writers emit one);
- **regression**: a finite number;
- **ranking**: a non-empty list of graded relevances, one finite
  non-negative number per candidate, in the candidate order of the
  prediction's scores (:mod:`sidecar.performance.ranking`).

Usage::

    validate_label("regression", 3.5)        # (True, None)
    validate_label("regression", "3.5")      # (False, "a regression label must be a number, got a string")
    class_key(1) == class_key("1") == class_key(1.0)  # True
"""

from __future__ import annotations

import math
from typing import Any

from sidecar.performance.task import Task

__all__ = ["class_key", "validate_label"]


def class_key(value: Any) -> str | None:
    """The text a class value is compared by, or None if the value cannot be a class.

    Booleans are ``"true"``/``"false"``; integers (and floats with an integer
    value) their decimal digits; strings themselves, unless empty.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value:
        return value
    return None


def validate_label(task: Task, value: Any, *, classes: tuple[str, ...] | None = None) -> tuple[bool, str | None]:
    """``(True, None)`` if ``value`` is a valid label for ``task``, else ``(False, reason)``.

    For classification with ``classes`` configured, the label must also be one of them.
    """
    if task == "classification":
        return _check_class(value, classes)
    if task == "regression":
        return _check_number(value)
    return _check_relevances(value)


def _check_class(value: Any, classes: tuple[str, ...] | None) -> tuple[bool, str | None]:
    key = class_key(value)
    if key is None:
        if value == "":
            return False, "a class label must not be an empty string"
        return False, f"a class label must be a string, an integer or a boolean, got {_describe(value)}"
    if classes is not None and key not in classes:
        return False, f"class {key!r} is not one of the configured classes ({', '.join(classes)})"
    return True, None


def _check_number(value: Any) -> tuple[bool, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False, f"a regression label must be a number, got {_describe(value)}"
    if not math.isfinite(value):
        return False, f"a regression label must be finite, got {value}"
    return True, None


def _check_relevances(value: Any) -> tuple[bool, str | None]:
    if not isinstance(value, list) or not value:
        return False, f"a ranking label must be a non-empty list of relevances, got {_describe(value)}"
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item) or item < 0:
            return False, f"relevance {position} must be a finite number of at least 0, got {_describe(item)}"
    return True, None


def _describe(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", str: "a string", list: "a list", dict: "an object"}
    if type(value) in names:
        return names[type(value)]
    return repr(value) if isinstance(value, int | float) else type(value).__name__
