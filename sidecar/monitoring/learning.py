"""Learn a reference profile from the first captured records, when none was given.

Without ``SIDECAR_REFERENCE_PATH`` the sidecar still needs bins to count
into. It keeps the first ``SIDECAR_REFERENCE_WARMUP`` records (PII already
removed), then builds a profile from them with the same builder as
``ml-sidecar profile build`` (same inference rules, same quantile edges), and
freezes it. Drift is then measured against the traffic the model first saw
after start-up, which is weaker than a training-data reference (the operator
is told so in ``/api/v1/drift``) but far better than nothing.

Which keys become features. Here the traffic, not the operator, decides the
schema, and every feature costs memory and ``/metrics`` series for the life
of the process; an unauthenticated client sending 100,000 distinct keys must
not get 100,000 features. A key of the records' features becomes a feature
when all of these hold:

- its name has at most :data:`NAME_CHARS` characters (names become label values);
- it appears in at least :data:`MIN_SHARE` of the warm-up rows, and in at
  least :data:`MIN_ROWS` of them;
- it is among the ``SIDECAR_MAX_FEATURES`` most frequent such keys (ties by
  name); the features keep the order in which traffic first showed them.

What is left out is counted in :class:`LeftOut` (``/api/v1/drift`` and
``mlsidecar_reference_features_left_out``). A string value longer than
:data:`CATEGORY_CHARS` characters (a list or object whose JSON text is) is
learned as :data:`~sidecar.reference.OTHER`, the profile's other bucket,
where live traffic puts such a value too: no payload makes a long value a
category, hence a ``bin`` label value.

Memory. The learner follows at most ``2 × SIDECAR_MAX_FEATURES`` keys at a
time, with the rows each was in since it was admitted. A row keeps the values
of the keys followed just after it was counted, so the learner holds at most
``SIDECAR_REFERENCE_WARMUP × 2 × SIDECAR_MAX_FEATURES`` values, each at most
:data:`CATEGORY_CHARS` characters of text, plus 2 MiB to estimate how many
distinct keys it saw (:class:`DistinctCount`), whatever clients send. While
no more keys than that room are seen, every key is followed from its first
row on. When a row brings more new keys than there is room, the half of the
followed keys in the most rows stay (the earlier followed on ties) and the
row's new keys fill the room left, in the row's order: a flood of fresh keys
evicts fresh keys, not the features every row has, and rows wider than the
room keep following the same keys (then ``max_features`` counts only the
qualified keys among those followed, and the others count as ``rare``). A
key not followed at a row it was in is missing there, a null to the profile:
only a flood of keys or rows wider than the room can cause that.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from sidecar.profiling import BuildOptions, build_profile
from sidecar.records import PredictionRecord
from sidecar.reference import OTHER, ReferenceProfile, category_key

__all__ = [
    "CATEGORY_CHARS",
    "MIN_ROWS",
    "MIN_SHARE",
    "NAME_CHARS",
    "DistinctCount",
    "Learned",
    "LeftOut",
    "ReferenceLearner",
]

MIN_SHARE = 0.01  # of the warm-up rows a key must appear in to become a feature
MIN_ROWS = 5  # and never fewer rows than this, whatever the warm-up's size
NAME_CHARS = 128  # longest feature name learned
CATEGORY_CHARS = 64  # longest value learned as itself; longer ones are OTHER

# Column names for the model outputs in the warm-up table, chosen not to
# collide with a feature name (a key spelled like one is never a feature).
_PREDICTION = "__sidecar_prediction__"
_CONFIDENCE = "__sidecar_confidence__"
_RESERVED = frozenset({_PREDICTION, _CONFIDENCE})
_SCALARS = (int, float, type(None))  # bool is an int


class DistinctCount:
    """How many distinct strings were added, estimated in fixed memory by linear counting.

    Each string marks one of :data:`SIZE` bytes, chosen by its BLAKE2b hash
    (the same on every run, unlike ``hash``; CRC-32, being linear, collides far
    more than chance on names like ``k1``, ``k2``...). After ``n`` distinct
    strings about ``SIZE · e^(-n/SIZE)`` bytes are unmarked, so
    ``-SIZE · ln(unmarked/SIZE)`` estimates ``n`` (Whang, Vander-Zanden and
    Taylor, 1990): exact in practice below a few hundred strings, off by a
    few units below ten thousand, within about 0.1 % up to a million. With every byte marked it answers
    ``SIZE · ln(SIZE)``, about 14.5 million: "at least".

    Usage::

        names = DistinctCount()
        for name in ("a", "b", "a"):
            names.add(name)
        names.estimate()  # 2
    """

    SIZE = 1 << 20

    def __init__(self) -> None:
        self._marks = bytearray(self.SIZE)

    def add(self, text: str) -> None:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        self._marks[int.from_bytes(digest, "little") & (self.SIZE - 1)] = 1

    def estimate(self) -> int:
        unmarked = max(self._marks.count(0), 1)
        return round(-self.SIZE * math.log(unmarked / self.SIZE))


@dataclass(frozen=True)
class LeftOut:
    """Keys of the warm-up traffic that did not become features, by reason.

    ``rare``: in too few rows, or never followed; ``long_name``: a name past
    :data:`NAME_CHARS` characters; ``max_features``: frequent enough, but past
    ``SIDECAR_MAX_FEATURES``. The distinct keys seen are estimated
    (:class:`DistinctCount`): ``rare`` and ``long_name`` are exact in practice
    below a few hundred keys, and within about 0.1 % up to a million.
    """

    rare: int = 0
    long_name: int = 0
    max_features: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"rare": self.rare, "long_name": self.long_name, "max_features": self.max_features}


@dataclass(frozen=True)
class Learned:
    profile: ReferenceProfile
    left_out: LeftOut


class ReferenceLearner:
    """Collect warm-up records, then build a profile from them once.

    Usage::

        learner = ReferenceLearner(target=1000, bins=10, max_features=200)
        if learner.add(records):               # True once enough records are in
            learned = learner.build()          # CPU work: run it off the event loop
            learned.profile, learned.left_out
    """

    def __init__(self, *, target: int, bins: int, max_features: int) -> None:
        if max_features < 1:
            raise ValueError(f"max_features must be at least 1, not {max_features}")
        self.target = target
        self.bins = bins
        self.max_features = max_features
        self.capacity = 2 * max_features
        # Rows each key was in since it was last admitted, in admission order; at most `capacity` keys.
        self._held: dict[str, int] = {}
        self._names = DistinctCount()
        self._long_names = DistinctCount()
        self._rows: list[dict[str, Any]] = []
        self._outputs: list[tuple[Any, Any]] = []

    @property
    def seen(self) -> int:
        return len(self._rows)

    def add(self, records: Sequence[PredictionRecord]) -> bool:
        """Keep records until the target is reached; True when it is."""
        room = self.target - len(self._rows)
        for record in records[: max(room, 0)]:
            self._rows.append(self._row(record.features))
            self._outputs.append((_bounded(record.prediction), record.confidence))
        return len(self._rows) >= self.target

    def _row(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """Count the row's keys; keep the values of the keys held afterwards."""
        held = self._held
        names, new = [], []
        for name in features:
            if len(name) > NAME_CHARS:
                self._long_names.add(name)
                continue
            names.append(name)
            if name in held:
                held[name] += 1
            else:
                new.append(name)
                self._names.add(name)  # a held key was added when it was new
        room = self.capacity - len(held)
        if len(new) > room:
            # Make room: keep the half of the held keys in most rows, the earlier admitted on ties
            # (nlargest is stable). A flood of fresh keys then evicts only fresh keys, and rows wider
            # than the room keep following the same keys, their first in the row's order.
            held = self._held = dict(heapq.nlargest(self.capacity // 2, held.items(), key=itemgetter(1)))
            room = self.capacity - len(held)
        for name in new[:room]:
            held[name] = 1
        return {name: _bounded(features[name]) for name in names if name in held}

    def select(self) -> tuple[list[str], LeftOut]:
        """The features to learn, in the order traffic first showed them, and what is left out."""
        rows = len(self._rows)
        needed = max(MIN_ROWS, math.ceil(MIN_SHARE * rows))
        presence = Counter(chain.from_iterable(self._rows))  # first-seen order, as a dict keeps it
        qualified = [name for name, n in presence.items() if n >= needed and name not in _RESERVED]
        kept = set(sorted(qualified, key=lambda name: (-presence[name], name))[: self.max_features])
        left_out = LeftOut(
            rare=max(self._names.estimate() - len(qualified), 0),
            long_name=self._long_names.estimate(),
            max_features=len(qualified) - len(kept),
        )
        return [name for name in qualified if name in kept], left_out

    def build(self) -> Learned:
        """The profile of the warm-up records, and what it left out; the records are released afterwards."""
        features, left_out = self.select()
        with tempfile.TemporaryDirectory(prefix="ml-sidecar-warmup-") as directory:
            path = Path(directory) / "warmup.jsonl"
            with path.open("wb") as file:
                for row, (prediction, confidence) in zip(self._rows, self._outputs, strict=True):
                    table = {name: row[name] for name in features if name in row}
                    table[_PREDICTION], table[_CONFIDENCE] = prediction, confidence
                    file.write(orjson.dumps(table) + b"\n")
            predictions = any(prediction is not None for prediction, _ in self._outputs)
            confidences = any(confidence is not None for _, confidence in self._outputs)
            options = BuildOptions(
                format="jsonl",
                bins=self.bins,
                prediction=_PREDICTION if predictions else None,
                confidence=_CONFIDENCE if confidences else None,
                exclude=frozenset(
                    name for name, present in ((_PREDICTION, predictions), (_CONFIDENCE, confidences)) if not present
                ),
            )
            result = build_profile(path, options)
        self._rows, self._outputs = [], []
        profile = result.profile
        source = {
            **profile.source,
            "path": None,
            "learned_from": "warm-up traffic",
            "rows": result.rows,
            "left_out": left_out.as_dict(),
        }
        learned = ReferenceProfile(
            version="learned-" + profile.version,
            created_at=profile.created_at,
            features=profile.features,
            outputs=profile.outputs,
            target=profile.target,
            baseline=profile.baseline,
            source=source,
        )
        return Learned(learned, left_out)


def _bounded(value: Any) -> Any:
    """The value as learned: itself, or OTHER when naming it as a category would take too many characters."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, str):
        return value if len(value) <= CATEGORY_CHARS else OTHER
    if isinstance(value, list | dict) and len(value) > CATEGORY_CHARS:
        return OTHER  # two characters at least per item: too long, without serialising it
    return value if len(category_key(value)) <= CATEGORY_CHARS else OTHER
