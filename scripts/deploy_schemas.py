"""JSON schemas for kubeconform, made from registry packages, and the manifest list to check.

Used by scripts/validate-deploy.sh, which runs it with the Python of its cached tools venv:

  kubernetes WHEEL VERSION OUT
        WHEEL is the PyPI package kubernetes-validate, which bundles per Kubernetes version a
        `vX.Y.Z-local-strict` directory where every kind's schema refers into one shared
        `_definitions.json`. OUT gets one standalone schema per kind, named as kubeconform looks
        it up, with only the definitions that kind reaches: kubeconform would fetch a reference
        to another file over the network.
  crds OUT CRD...
        CustomResourceDefinition files (KEDA's and the RabbitMQ operators', from their Go
        modules). OUT gets `<group>/<kind>_<version>.json` per served version, strict like
        kubectl: an unknown field is an error unless the CRD preserves unknown fields there.
  manifests DIR
        the manifests of DIR to validate, one a line: the files kustomization.yaml lists as
        resources plus the `*.example.yaml` files it must not list. A resource that is a
        directory is a base (one with a kustomization.yaml, validated on its own), and the files
        of `patches` are partial objects, validated only in what kustomize builds. Any other
        YAML file of DIR, or a listed file that is missing, is an error.
  promql DASHBOARD...
        parses every query of these Grafana dashboards with promql-parser (Prometheus's
        grammar and function signatures), Grafana's range variables set to 5m.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

DEFINITIONS = "_definitions.json"
SHARED_REF = "/api/_definitions.json#/$defs/"
LOCAL_REF = "#/$defs/"
GRAFANA_RANGE = re.compile(r"\$\{?(__rate_interval|__interval|__range)\b\}?")
SCHEMA_MAPS = {"properties", "patternProperties", "definitions"}
SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "items"}
SCHEMA_VALUES = {"items", "additionalProperties", "not"}
DRAFT_4 = "http://json-schema.org/draft-04/schema#"  # OpenAPI v3 schemas are draft 4 at heart


def kubernetes(wheel: Path, version: str, out: Path) -> int:
    bundled = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    source = zipfile.Path(wheel, bundled)
    if not source.is_dir():
        raise SystemExit(f"{wheel.name} has no schemas for Kubernetes {version}")
    definitions: dict[str, Any] = json.loads(source.joinpath(DEFINITIONS).read_text())["$defs"]
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(source.iterdir(), key=lambda entry: entry.name):
        if not path.name.endswith(".json"):
            continue
        schema = json.loads(path.read_text())
        if "x-kubernetes-group-version-kind" not in schema:
            continue  # a shared type, not a kind a manifest can have
        schema = _rewrite_refs(schema)
        schema.pop("$id", None)  # refs now resolve inside this document
        reached = sorted(_reached(schema, definitions))
        schema["$defs"] = {name: definitions[name] for name in reached}
        (out / path.name).write_text(json.dumps(schema, separators=(",", ":")))
        count += 1
    return count


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace(SHARED_REF, LOCAL_REF)
            if key == "$ref" and isinstance(value, str)
            else _rewrite_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _reached(schema: Any, definitions: dict[str, Any]) -> set[str]:
    """Names of the definitions `schema` refers to, directly or through other definitions."""
    seen: set[str] = set()
    pending = list(_refs(schema))
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(_refs(definitions[name]))
    return seen


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")  # a string; JSONSchemaProps also has a *property* named $ref
        found = [ref.removeprefix(LOCAL_REF)] if isinstance(ref, str) else []
        return found + [name for value in node.values() for name in _refs(value)]
    if isinstance(node, list):
        return [name for item in node for name in _refs(item)]
    return []


def crds(out: Path, sources: list[Path]) -> int:
    count = 0
    for source in sources:
        for crd in yaml.safe_load_all(source.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            kind = spec["names"]["kind"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schema["$schema"] = DRAFT_4
                api_version = f"{spec['group']}/{version['name']}"
                schema.setdefault("properties", {}).update(
                    apiVersion={"type": "string", "enum": [api_version]},
                    kind={"type": "string", "enum": [kind]},
                )
                target = out / spec["group"] / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, separators=(",", ":")))
                count += 1
    return count


def _strict(node: Any) -> Any:
    """OpenAPI v3 as the API server reads it, in JSON Schema terms."""
    if not isinstance(node, dict):
        return node
    schema: dict[str, Any] = {}
    for key, value in node.items():  # recurse by keyword: a field may be named "nullable"
        if key in SCHEMA_MAPS:
            schema[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in SCHEMA_LISTS and isinstance(value, list):
            schema[key] = [_strict(sub) for sub in value]
        elif key in SCHEMA_VALUES:
            schema[key] = _strict(value)
        else:
            schema[key] = value
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.pop("nullable", False) and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        schema["additionalProperties"] = False
    return schema


def manifests(directory: Path) -> list[Path]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources = [directory / name for name in kustomization.get("resources") or []]
    bases = [path for path in resources if path.is_dir()]  # validated as directories of their own
    listed = [path for path in resources if path not in bases]
    patches = [
        directory / patch["path"] for patch in kustomization.get("patches") or [] if "path" in patch
    ]
    examples = sorted(directory.glob("*.example.yaml"))
    problems = [
        f"{path}: in kustomization.yaml but missing"
        for path in [*listed, *patches]
        if not path.exists()
    ]
    problems += [
        f"{path}: a base without a kustomization.yaml"
        for path in bases
        if not (path / "kustomization.yaml").exists()
    ]
    problems += [
        f"{path}: an example, not for kustomization.yaml"
        for path in examples
        if path in [*listed, *patches]
    ]
    known = {*listed, *patches, *examples, directory / "kustomization.yaml"}
    problems += [
        f"{path}: neither in kustomization.yaml nor an *.example.yaml"
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
        if path not in known
    ]
    if problems:
        raise SystemExit("\n".join(problems))
    return [*listed, *examples]


def promql(dashboards: list[Path]) -> int:
    import promql_parser  # type: ignore[import-not-found]  # only the tools venv has it

    problems: list[str] = []
    count = 0
    for dashboard in dashboards:
        for title, expr in _queries(json.loads(dashboard.read_text())):
            count += 1
            try:
                promql_parser.parse(GRAFANA_RANGE.sub("5m", expr))
            except ValueError as exc:
                problems.append(f"{dashboard}: panel {title!r}: {exc}: {expr}")
    if problems:
        raise SystemExit("\n".join(problems))
    return count


def _queries(node: Any, title: str = "") -> list[tuple[str, str]]:
    """(panel title, expression) of every panel target, rows and nested panels included."""
    if isinstance(node, list):
        return [query for item in node for query in _queries(item, title)]
    if not isinstance(node, dict):
        return []
    title = node.get("title", title)
    found = [(title, target["expr"]) for target in node.get("targets", []) if target.get("expr")]
    return found + _queries(node.get("panels", []), title)


def main(argv: list[str]) -> None:
    match argv:
        case ["kubernetes", wheel, version, out]:
            count = kubernetes(Path(wheel), version, Path(out))
            print(f"Kubernetes {version}: {count} kinds", file=sys.stderr)
        case ["crds", out, *sources] if sources:
            count = crds(Path(out), [Path(source) for source in sources])
            print(f"{count} custom resource versions", file=sys.stderr)
        case ["promql", *dashboards] if dashboards:
            count = promql([Path(dashboard) for dashboard in dashboards])
            print(f"{count} PromQL queries parsed", file=sys.stderr)
        case ["manifests", directory]:
            print("\n".join(str(path) for path in manifests(Path(directory))))
        case _:
            raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
