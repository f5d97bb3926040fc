"""The sidecar's exceptions.

The hierarchy, with the module of each class defined elsewhere::

    SidecarError
    ├── ProblemsError                input that cannot be used; ``problems`` has one line each → exit 2
    │   ├── ConfigError              SIDECAR_* settings invalid or missing
    │   ├── AlertRulesError          the SIDECAR_ALERT_RULES file          (sidecar.alerting.rules)
    │   ├── QualityRulesError        the SIDECAR_QUALITY_RULES file        (sidecar.quality.rules)
    │   ├── ExperimentError          the SIDECAR_EXPERIMENT_PATH file      (sidecar.experiments.definition)
    │   └── OptionError              ``profile`` options that do not fit   (sidecar.profiling.errors)
    ├── UpstreamError                the model server could not give a response
    │   ├── UpstreamConnectError     refused, unreachable, DNS failure     → 502
    │   ├── UpstreamTimeout          no answer within the timeout          → 504
    │   │   └── UpstreamPoolTimeout  every pooled connection busy too long → 503
    │   └── UpstreamProtocolError    broken or truncated HTTP              → 502
    ├── PayloadError (ValueError)    a body its adapter cannot read        (sidecar.protocols)
    │   └── PayloadTooLarge          a compressed body too large decoded   (sidecar.protocols)
    ├── ProfileError                 a reference profile missing or unfit  (sidecar.reference)
    ├── DataError                    a ``profile`` DATA file unreadable    (sidecar.profiling.errors)
    └── StoreError                   the prediction store cannot be used   (sidecar.store)

Catch :class:`ProblemsError` to report every problem of any input, one per
line, the way the command line does.

``UpstreamError.reason`` is the value of the ``reason`` label of
``mlsidecar_proxy_errors_total``.
"""

from __future__ import annotations

__all__ = [
    "SidecarError",
    "ProblemsError",
    "ConfigError",
    "UpstreamError",
    "UpstreamConnectError",
    "UpstreamTimeout",
    "UpstreamPoolTimeout",
    "UpstreamProtocolError",
]


class SidecarError(Exception):
    """Base class of every error the sidecar raises on purpose."""


class ProblemsError(SidecarError):
    """Input that cannot be used, with every problem found in it, one line each.

    Validation collects all the problems before raising, so a person fixes a
    manifest or a file in one pass rather than one failure at a time.
    ``str()`` is the lines joined by newlines.

    Usage::

        try:
            settings = Settings.from_env()
        except ProblemsError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ConfigError(ProblemsError):
    """Settings that cannot be used: one line per variable, naming it, its value and what is allowed."""


class UpstreamError(SidecarError):
    reason = "protocol"
    status_code = 502


class UpstreamConnectError(UpstreamError):
    reason = "connect"


class UpstreamTimeout(UpstreamError):
    reason = "timeout"
    status_code = 504


class UpstreamPoolTimeout(UpstreamTimeout):
    """Every pooled connection stayed busy past the pool timeout: the sidecar is saturated, and a retry may succeed."""

    reason = "pool"
    status_code = 503


class UpstreamProtocolError(UpstreamError):
    reason = "protocol"
