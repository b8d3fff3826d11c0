"""Exports the contract's models as JSON Schema into ``schemas/json/``:
``python -m schemas.export`` (a test fails when the committed files are stale)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from schemas import decisions, events

JSON_DIR = Path(__file__).parent / "json"
# Where each file says it comes from: stable, without a version, because compatible additions
# keep the contract's version (CONTRACT.md, v2); an incompatible change would get a new $id.
BASE_ID = "https://chatroute.dev/schemas/"


def _schema(
    name: str, title: str, envelope: type[BaseModel], data: dict[str, type[BaseModel]]
) -> dict[str, Any]:
    schema = envelope.model_json_schema()
    schema["$schema"] = GenerateJsonSchema.schema_dialect  # draft 2020-12, what pydantic writes
    schema["$id"] = BASE_ID + name
    schema["title"] = title
    schema["$defs"] = schema.get("$defs", {})
    variants = []
    for type_name, model in sorted(data.items()):
        data_schema = model.model_json_schema(ref_template="#/$defs/{model}")
        schema["$defs"].update(data_schema.pop("$defs", {}))
        schema["$defs"][model.__name__] = data_schema
        variants.append(
            {
                "if": {"properties": {"type": {"const": type_name}}},
                "then": {"properties": {"data": {"$ref": f"#/$defs/{model.__name__}"}}},
            }
        )
    schema["allOf"] = variants
    return schema


def export_all(directory: Path = JSON_DIR) -> list[Path]:
    """Write ``events.json`` and ``decisions.json`` deterministically; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = {
        "events.json": ("chatroute event", events.Envelope, events.DATA_MODELS),
        "decisions.json": ("chatroute decision", decisions.Decision, decisions.DATA_MODELS),
    }
    paths = []
    for name, (title, envelope, data) in sources.items():
        document = _schema(name, title, envelope, data)
        path = directory / name
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in export_all():
        print(f"wrote {written}")
