"""Reading a YAML configuration file, with errors an operator can act on.

The quality rules and the alert rules are both YAML files named by a
setting; a file that cannot be read, is not UTF-8 or is not YAML fails the
same way for both, naming the file and, for YAML, the line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["StrictLoader", "read_yaml"]


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


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which plain YAML loading silently resolves to the last."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # "<<: *base" then overriding a key is what merge keys are for
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it with its position
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
