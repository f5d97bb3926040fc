"""Reference profiles from training data: ``ml-sidecar profile build``, ``profile show`` and ``profile check``.

The modules, one concept each:

- :mod:`~sidecar.profiling.readers` (with ``csvfile``, ``jsonl``, ``parquet``): chunked readers;
- :mod:`~sidecar.profiling.columns`: one column's running profile and the categorical inference rule;
- :mod:`~sidecar.profiling.sketch`: the mergeable quantile sketch for long columns;
- :mod:`~sidecar.profiling.counts`: bounded value and category counts;
- :mod:`~sidecar.profiling.baseline`: baseline metrics from target and prediction;
- :mod:`~sidecar.profiling.builder`: the streaming build and the atomic write;
- :mod:`~sidecar.profiling.check`: a data file judged against a profile with the drift windows;
- :mod:`~sidecar.profiling.show`, :mod:`~sidecar.profiling.progress`, :mod:`~sidecar.profiling.command`.

Usage::

    from sidecar.profiling import BuildOptions, build_profile, write_profile

    result = build_profile(Path("train.csv"), BuildOptions(target="label", prediction="pred"))
    write_profile(result.profile, Path("reference.json"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sidecar.profiling.builder import BuildOptions, BuildResult, build_profile, write_profile
    from sidecar.profiling.columns import infer_kind
    from sidecar.profiling.errors import DataError, OptionError
    from sidecar.profiling.show import render_profile
    from sidecar.profiling.sketch import QuantileSketch

__all__ = [
    "BuildOptions",
    "BuildResult",
    "DataError",
    "OptionError",
    "QuantileSketch",
    "build_profile",
    "infer_kind",
    "render_profile",
    "write_profile",
]

# Imported on first use, so that `ml-sidecar check-config` (whose parser
# reaches sidecar.profiling.command) does not pay for numpy.
_HOMES = {
    "BuildOptions": "builder",
    "BuildResult": "builder",
    "build_profile": "builder",
    "write_profile": "builder",
    "infer_kind": "columns",
    "DataError": "errors",
    "OptionError": "errors",
    "render_profile": "show",
    "QuantileSketch": "sketch",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
