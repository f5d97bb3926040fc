"""The demo's training run: fit the model, then profile its training data as the sidecar's reference.

Two versions are fitted on the same data: v1, the deployed model, linear in
the features, and v2, the challenger of the demo's experiment, which adds
their squares (:meth:`~demo.model_server.LogisticRegression.fit`).

This is what a real pipeline does before deploying a model: the profile
(``ml-sidecar profile build``, here through its Python API) records the
training distribution of every feature, of the model's outputs and of the
target, plus the model's accuracy on that data as the baseline. The
sidecar judges live traffic against it, so drift means "unlike the data the
model learned from".
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from demo.model_server import FEATURES, FloatArray, LogisticRegression, make_dataset
from demo.traffic import instance
from sidecar.profiling import BuildOptions, build_profile, write_profile

__all__ = ["TRAINING_ROWS", "Trained", "train"]

# Enough rows that the profile's ranges hold the calm traffic's rare tails (five
# late payments, 14 credit lines), so the calm phase shows no range violations.
TRAINING_ROWS = 20_000
# Small counts would pass for category codes (sidecar.profiling.columns); they are quantities.
_COUNTS = frozenset({"credit_lines", "late_payments"})


@dataclass(frozen=True)
class Trained:
    """The fitted models, v1 and v2, and the path of the reference profile of their training data.

    Usage::

        trained = train(Path(state_dir))
        serve(create_app(trained.model))  # and SIDECAR_REFERENCE_PATH=trained.reference
        serve(create_app(trained.challenger, version="2"))
    """

    model: LogisticRegression
    reference: Path
    challenger: LogisticRegression


def train(directory: Path, *, seed: int = 0, rows: int = TRAINING_ROWS) -> Trained:
    """Fit both models on ``rows`` applicants drawn with ``seed``; write ``training.csv`` and ``reference.json``
    (v1's, the deployed model's)."""
    x, y = make_dataset(np.random.default_rng(seed), rows)
    model = LogisticRegression.fit(x, y)
    data = directory / "training.csv"
    _write_csv(data, x, y, model.predict_proba(x))
    options = BuildOptions(
        numeric=_COUNTS, prediction="prediction", confidence="confidence", target="label", positive_label="1"
    )
    reference = directory / "reference.json"
    write_profile(build_profile(data, options).profile, reference)
    return Trained(model, reference, LogisticRegression.fit(x, y, quadratic=True))


def _write_csv(path: Path, x: FloatArray, y: NDArray[np.int64], probabilities: FloatArray) -> None:
    # The outputs as the sidecar reads the model's probability vectors: the class index and its probability.
    predicted = probabilities.argmax(axis=1)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*FEATURES, "prediction", "confidence", "label"])
        for row, label, index, p in zip(
            x, y.tolist(), predicted.tolist(), probabilities.max(axis=1).tolist(), strict=True
        ):
            writer.writerow([*instance(row).values(), index, round(p, 6), label])
