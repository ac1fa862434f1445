"""docs/api.md stays in step with the server: its endpoint index lists
exactly the operations of the OpenAPI document the server generates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Set, Tuple

from conftest import Server, http_json

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"
ROW = re.compile(r"^\|\s*(GET|POST|PUT|PATCH|DELETE)\s*\|\s*`([^`]+)`\s*\|", re.M)


def documented() -> Set[Tuple[str, str]]:
    index = DOC.read_text().split("## Endpoint index", 1)[1]
    return {(m.group(1), m.group(2)) for m in ROW.finditer(index)}


def test_endpoint_index_matches_openapi(server: Server) -> None:
    spec = http_json("GET", f"{server.url}/api/v1/openapi.json")
    served = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in {"get", "post", "put", "patch", "delete"}
    }
    served.add(("GET", "/api/v1/openapi.json"))  # serves the document, not in it
    doc = documented()
    assert not served - doc, f"operations missing from docs/api.md: {sorted(served - doc)}"
    assert not doc - served, f"docs/api.md lists operations the server lacks: {sorted(doc - served)}"


def test_every_field_and_query_parameter_is_documented(server: Server) -> None:
    spec = http_json("GET", f"{server.url}/api/v1/openapi.json")
    doc = DOC.read_text()
    missing = [
        f"{schema}.{prop}"
        for schema, body in spec["components"]["schemas"].items()
        for prop in (body.get("properties") or {})
        if not re.search(r"[`\"]" + re.escape(prop) + r"[`\"]", doc)
    ]
    missing += [
        f"{method.upper()} {path} ?{param['name']}"
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if isinstance(op, dict)
        for param in op.get("parameters", [])
        if param.get("in") == "query" and f"{param['name']}=" not in doc
    ]
    assert not missing, f"not in docs/api.md: {missing}"
