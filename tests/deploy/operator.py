"""JSON Schemas for the two Prometheus Operator kinds the Kubernetes example uses: PodMonitor, PrometheusRule.

kubernetes-validate knows the built-in kinds only, and no PyPI package ships the Operator's CRD
schemas (its generated Python models accept unknown fields), so these are written here from the
Operator's ``monitoring.coreos.com/v1`` API reference. They cover the fields the example may
use, with the CRDs' types, required fields and duration pattern, and they are stricter than the
CRDs in two ways, so that a mistake fails here instead of vanishing in the cluster:

- an unknown field is an error (the API server would prune it silently, and a misspelt
  ``intervl`` would leave the default in force);
- a rule has exactly one of ``record`` and ``alert``, and a recording rule has no ``for`` or
  ``annotations`` (what the Operator's admission webhook and Prometheus reject).

Usage::

    jsonschema.validate(resource, SCHEMAS[resource["kind"]])
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMAS"]

Schema = dict[str, Any]

# Prometheus' duration syntax, as the CRDs pattern it: 30s, 1m, 1h30m, 0.
DURATION: Schema = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRINGS: Schema = {"type": "object", "additionalProperties": {"type": "string"}}


def _object(properties: Schema, *required: str) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


METADATA = _object(
    {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string"},
        "labels": STRINGS,
        "annotations": STRINGS,
    },
    "name",
)

LABEL_SELECTOR = _object(
    {
        "matchLabels": STRINGS,
        "matchExpressions": {
            "type": "array",
            "items": _object(
                {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
                "key",
                "operator",
            ),
        },
    }
)

RELABELINGS: Schema = {
    "type": "array",
    "items": _object(
        {
            "sourceLabels": {"type": "array", "items": {"type": "string"}},
            "separator": {"type": "string"},
            "targetLabel": {"type": "string"},
            "regex": {"type": "string"},
            "modulus": {"type": "integer"},
            "replacement": {"type": "string"},
            "action": {"type": "string"},
        }
    ),
}

POD_METRICS_ENDPOINT = _object(
    {
        "port": {"type": "string", "minLength": 1},
        "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535},
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": DURATION,
        "scrapeTimeout": DURATION,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "relabelings": RELABELINGS,
        "metricRelabelings": RELABELINGS,
    }
)

POD_MONITOR = _object(
    {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": METADATA,
        "spec": _object(
            {
                "selector": LABEL_SELECTOR,
                "namespaceSelector": _object(
                    {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}
                ),
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "podMetricsEndpoints": {"type": "array", "items": POD_METRICS_ENDPOINT},
                "sampleLimit": {"type": "integer", "minimum": 0},
            },
            "selector",
        ),
    },
    "apiVersion",
    "kind",
    "metadata",
    "spec",
)

RULE = _object(
    {
        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "alert": {"type": "string", "minLength": 1},
        "expr": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]},
        "for": DURATION,
        "keep_firing_for": DURATION,
        "labels": STRINGS,
        "annotations": STRINGS,
    },
    "expr",
)
RULE["oneOf"] = [
    {"required": ["record"], "not": {"anyOf": [{"required": [key]} for key in ("alert", "for", "annotations")]}},
    {"required": ["alert"], "not": {"required": ["record"]}},
]

PROMETHEUS_RULE = _object(
    {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": _object(
            {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": _object(
                        {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "query_offset": DURATION,
                            "limit": {"type": "integer"},
                            "labels": STRINGS,
                            "rules": {"type": "array", "minItems": 1, "items": RULE},
                        },
                        "name",
                        "rules",
                    ),
                }
            },
            "groups",
        ),
    },
    "apiVersion",
    "kind",
    "metadata",
    "spec",
)

SCHEMAS: dict[str, Schema] = {"PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}
