"""A CustomResourceDefinition's schema as a JSON Schema that rejects unknown fields.

    python deploy/schemas/crd_schema.py CRD.yaml VERSION SOURCE > SCHEMA.json

Takes `spec.versions[name=VERSION].schema.openAPIV3Schema` and closes every object that
lists its properties (`additionalProperties: false`, unless the CRD says otherwise or
preserves unknown fields), as the API server's strict field validation does, so that a
misspelt field fails the check instead of being pruned. SOURCE is noted in `$comment`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-04/schema#"


def closed(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on each object that lists its properties."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:  # a mapping of names to schemas, not a schema itself
        result["properties"] = {name: closed(sub) for name, sub in schema["properties"].items()}
        open_ended = schema.get("x-kubernetes-preserve-unknown-fields") is True
        if "additionalProperties" not in schema and not open_ended:
            result["additionalProperties"] = False
    return result


def crd_schema(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = closed(served["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    return {
        "$schema": JSON_SCHEMA_DRAFT,
        "$comment": f"{kind} {group}/{version} from {source}, unknown fields rejected",
        **schema,
    }


def main() -> None:
    crd_file, version, source = sys.argv[1:]
    crd = yaml.safe_load(Path(crd_file).read_text())
    json.dump(crd_schema(crd, version, source), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
