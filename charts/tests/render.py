"""Render the order-service chart offline (Helm v4 SDK, no helm binary, no cluster).

Each environment is rendered the way the deploy workflow installs it: the chart defaults, the
environment's values file, then the values the workflow sets from Terraform outputs
(CONTRACT.md, "Chart values the workflows set").

    python charts/tests/render.py OUTDIR   # writes OUTDIR/<environment>.yaml for scanners
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[1] / "order-service"
RELEASE = "order-service"

# What the deploy workflow passes with --set, in the shape Terraform outputs give it.
WORKFLOW_VALUES = {
    "staging": {
        "image": {
            "repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/order-service",
            "tag": "0f3c2a1d9e8b7c6a5f4e3d2c1b0a9f8e7d6c5b4a",
        },
        "serviceAccount": {"roleArn": "arn:aws:iam::123456789012:role/order-service-staging"},
        "ingress": {
            "host": "staging.orders.example.com",
            "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/staging-cert",
        },
        "secretsManager": {"secretName": "order-service/staging"},
    },
    "production": {
        "image": {
            "repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/order-service",
            "tag": "0f3c2a1d9e8b7c6a5f4e3d2c1b0a9f8e7d6c5b4a",
        },
        "serviceAccount": {"roleArn": "arn:aws:iam::123456789012:role/order-service-production"},
        "ingress": {
            "host": "orders.example.com",
            "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/production-cert",
        },
        "secretsManager": {"secretName": "order-service/production"},
    },
}

# environment -> (values file or None for the defaults alone, namespace)
ENVIRONMENTS = {
    "default": (None, "order-service"),
    "staging": ("values.staging.yaml", "staging"),
    "production": ("values.prod.yaml", "production"),
}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge like successive `helm -f` / `--set`: maps merge, everything else replaces."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def values_for(environment: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """User-supplied values (not including chart defaults) for an environment."""
    values_file, _ = ENVIRONMENTS[environment]
    values: dict[str, Any] = {}
    if values_file:
        values = helm.values_from_yaml((CHART / values_file).read_text())
    values = merge(values, WORKFLOW_VALUES.get(environment, {}))
    return merge(values, overrides or {})


def render(environment: str, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for an environment, hook objects included."""
    _, namespace = ENVIRONMENTS[environment]
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(
            values_for(environment, overrides), name=RELEASE, namespace=namespace, is_install=True
        )
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def main(outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for environment in ENVIRONMENTS:
        docs = render(environment)
        (out / f"{environment}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        print(f"rendered {len(docs)} objects for {environment} -> {out / environment}.yaml")


if __name__ == "__main__":
    main(sys.argv[1])
