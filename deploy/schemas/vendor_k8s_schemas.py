"""Regenerate ``k8s-strict.json``: the JSON schemas that ``tests/deploy`` checks manifests against.

The schemas come from the ``kubernetes-validate`` wheel on PyPI (Apache-2.0), which ships the
``*-local-strict`` JSON schemas generated from the Kubernetes OpenAPI spec (Apache-2.0) in the
format of yannh/kubernetes-json-schema: one file per kind plus a large ``_definitions.json``.
This script keeps only what the manifests under ``deploy/k8s`` use: the top-level schemas of
a few kinds and the definitions reachable from them, with descriptions and ``x-kubernetes-*``
annotations dropped, bundled into one self-contained draft 2020-12 document.

Usage (not needed to run the tests; only to move to another Kubernetes version)::

    pip download --no-deps -d /tmp/kv kubernetes-validate==1.37.0
    python deploy/schemas/vendor_k8s_schemas.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path
from typing import Any

#: Kubernetes version whose schemas are vendored.
K8S_VERSION = "v1.33.0"

#: kind key -> file name of its top-level schema in the wheel.
KINDS = {
    "apps/v1/Deployment": "deployment-apps-v1.json",
    "v1/Service": "service-v1.json",
    "policy/v1/PodDisruptionBudget": "poddisruptionbudget-policy-v1.json",
    "autoscaling/v2/HorizontalPodAutoscaler": "horizontalpodautoscaler-autoscaling-v2.json",
}

_REF_PREFIX = "/api/_definitions.json#/$defs/"
OUT = Path(__file__).with_name("k8s-strict.json")


def _clean(node: Any, refs: set[str]) -> Any:
    """Return ``node`` without descriptions/annotations, with refs made local; collect refs."""
    if isinstance(node, list):
        return [_clean(v, refs) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("$id", "$schema"):
            continue
        if key == "description" and isinstance(value, str):
            continue
        if key == "$ref":
            name = value.removeprefix(_REF_PREFIX).removeprefix("#/$defs/")
            refs.add(name)
            out[key] = "#/$defs/" + name
            continue
        out[key] = _clean(value, refs)
    return out


def bundle(wheel: Path) -> dict[str, Any]:
    """Build the bundled schema document from a kubernetes-validate wheel.

    Parameters
    ----------
    wheel : Path
        Path of ``kubernetes_validate-*.whl``.

    Returns
    -------
    dict
        ``{"$schema", "$comment", "kinds": {kind key: def name}, "$defs": {...}}``.
    """
    base = f"kubernetes_validate/kubernetes-json-schema/{K8S_VERSION}-local-strict/"
    with zipfile.ZipFile(wheel) as zf:
        definitions = json.loads(zf.read(base + "_definitions.json"))["$defs"]
        tops = {kind: json.loads(zf.read(base + name)) for kind, name in KINDS.items()}
    defs: dict[str, Any] = {}
    pending: set[str] = set()
    kinds = {}
    for kind, schema in tops.items():
        name = "kind." + kind.replace("/", ".")  # no "/": it would need escaping in a $ref
        kinds[kind] = name
        defs[name] = _clean(schema, pending)
    while pending:
        name = pending.pop()
        if name not in defs:
            defs[name] = _clean(definitions[name], pending)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Kubernetes {K8S_VERSION} strict schemas (from the Kubernetes OpenAPI spec, "
            f"Apache-2.0, via {wheel.name}); regenerate with vendor_k8s_schemas.py"
        ),
        "kinds": kinds,
        "$defs": dict(sorted(defs.items())),
    }


def main() -> None:
    """Command-line entry point: write ``k8s-strict.json`` next to this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="kubernetes_validate-*.whl")
    args = parser.parse_args()
    OUT.write_text(json.dumps(bundle(args.wheel), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
