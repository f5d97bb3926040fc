"""Reading a YAML configuration file, with errors an operator can act on.

The quality rules and the alert rules are both YAML files named by a
setting; a file that cannot be read, is not UTF-8 or is not YAML fails the
same way for both, naming the file and, for YAML, the line and column.
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["read_yaml"]


def read_yaml(path: str | Path, what: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> object:
    """The parsed document; ValueError with one line saying what is wrong, ``what`` naming the file's role.

    ``loader`` must be a SafeLoader (or a subclass): configuration never builds arbitrary objects.

    Usage::

        data = read_yaml("/etc/sidecar/alerts.yaml", "alert rules")
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} is not UTF-8 text: {exc.reason}") from exc
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader (see above): no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{what} {path} is not valid YAML: {exc.problem}{where}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {path} is not valid YAML: {exc}") from exc
