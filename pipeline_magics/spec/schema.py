"""The spec's JSON Schema, built from the pydantic models and the method registry.

Each step is one of the registered (type, method) variants with that method's
own settings, so editors can validate and complete ``config``.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ..methods import METHODS
from .model import PipelineSpec, Step

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pipeline-spec.schema.json")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline spec (draft 2020-12)."""
    schema = PipelineSpec.model_json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})
    step = Step.model_json_schema(by_alias=True)
    defs.update(step.pop("$defs", {}))
    variants = []
    for (type_, name), method in sorted(METHODS.items()):
        config = method.config.model_json_schema(by_alias=True)
        defs.update(config.pop("$defs", {}))
        config_name = f"{type_}.{name}.config"
        defs[config_name] = config
        variant = json.loads(json.dumps(step))
        variant["title"] = f"{type_} {name}"
        variant["description"] = method.summary
        variant["properties"]["type"] = {"const": type_}
        variant["properties"]["method"] = {"const": name}
        variant["properties"]["config"] = {"$ref": f"#/$defs/{config_name}"}
        variant["required"] = ["type", "method"] + (["config"] if any(
            f.is_required() for f in method.config.model_fields.values()) else [])
        variants.append(variant)
    schema["properties"]["steps"]["items"] = {"oneOf": variants}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pipeline_magics pipeline spec"
    return schema


def write_schema_file(path: str = SCHEMA_FILE) -> None:
    """Writes the shipped schema file (``make schema``)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(json_schema(), fh, indent=2, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    write_schema_file()
