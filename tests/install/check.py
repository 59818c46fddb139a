"""Checks of the install files that need Python's reference libraries (run by tests/install/*.rs with .venv's Python).

  check.py k8s VERSION FILE...   every YAML document, validated strictly (kubernetes-validate) against Kubernetes
                                 VERSION; prints a JSON list of {file, kind, name, result, message}, result one of
                                 ok, invalid, no-schema (a custom resource)
  check.py schema SCHEMA FILE    FILE's YAML against the JSON Schema (Draft 7) SCHEMA; prints a JSON list of errors
"""
import json
import sys

import jsonschema
import kubernetes_validate
import yaml


def k8s(version, files):
    out = []
    for name in files:
        with open(name, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            row = {
                "file": name,
                "kind": doc.get("kind"),
                "name": (doc.get("metadata") or {}).get("name"),
            }
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                row.update(result="ok", message="")
            except kubernetes_validate.SchemaNotFoundError as e:
                row.update(result="no-schema", message=str(e))
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                row.update(result="invalid", message=f"{path}: {e.message}")
            out.append(row)
    return out


def schema(schema_file, values_file):
    with open(schema_file, encoding="utf-8") as f:
        contents = json.load(f)
    with open(values_file, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    validator = jsonschema.Draft7Validator(contents)
    return [
        "/".join(str(p) for p in e.absolute_path) + ": " + e.message
        for e in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))
    ]


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "k8s":
        result = k8s(rest[0], rest[1:])
    elif command == "schema":
        result = schema(rest[0], rest[1])
    else:
        sys.exit(f"unknown command {command!r}")
    json.dump(result, sys.stdout)
