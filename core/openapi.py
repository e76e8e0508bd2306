"""An OpenAPI 3.1 document built from routes described as data and their pydantic models.

The admin API declares each route as an :class:`Operation` (method, path, summary,
query parameters, response model, error statuses); :func:`document` turns them
into ``/openapi.json``: component schemas come from the pydantic models
(``model_json_schema``), so the document cannot drift from what the endpoints
return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

__all__ = ["Operation", "Parameter", "document"]

_REF = "#/components/schemas/{model}"
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


@dataclass(frozen=True)
class Parameter:
    """A query (or path) parameter."""

    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One route: what it takes and answers. ``response`` is a model, ``list[Model]``,
    a JSON schema (``dict``) or ``None`` (plain text, e.g. ``/metrics``)."""

    method: str
    path: str
    summary: str
    response: Any
    parameters: Sequence[Parameter] = ()
    errors: Sequence[int] = ()
    status: int = 200
    tag: str = "admin"
    extra_responses: dict[int, str] = field(default_factory=dict)


def _models(response: Any) -> list[type[BaseModel]]:
    if isinstance(response, type) and issubclass(response, BaseModel):
        return [response]
    if get_origin(response) is list:
        return _models(get_args(response)[0])
    return []


def _schema(response: Any) -> dict[str, Any]:
    if isinstance(response, type) and issubclass(response, BaseModel):
        return {"$ref": _REF.format(model=response.__name__)}
    if get_origin(response) is list:
        return {"type": "array", "items": _schema(get_args(response)[0])}
    if isinstance(response, dict):
        return response
    return {"type": "string"}


def document(title: str, version: str, operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI document of ``operations``."""
    models = {m for op in operations for m in _models(op.response)}
    _, schemas = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=_REF,
    )
    components = dict(schemas.get("$defs", {}))
    components["Error"] = _ERROR
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        content_type = "application/json" if op.response is not None else "text/plain"
        responses: dict[str, Any] = {
            str(op.status): {
                "description": "OK",
                "content": {content_type: {"schema": _schema(op.response)}},
            }
        }
        for code, text in op.extra_responses.items():
            responses[str(code)] = {
                "description": text,
                "content": {content_type: {"schema": _schema(op.response)}},
            }
        for code in op.errors:
            responses[str(code)] = {
                "description": _ERRORS.get(code, "error"),
                "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": _operation_id(op),
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.parameters
            ],
            "responses": responses,
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_ERRORS = {
    400: "bad request (a parameter is wrong)",
    401: "missing or wrong bearer token (http.admin_token)",
    403: "not from loopback without http.admin_token, or a browser request from another site",
    404: "no such connector, topic or group",
    409: "the connector cannot do that in its state",
    415: "a form body (a page on another site could send one): send none, or JSON",
    503: "not ready (the reasons are listed)",
}


def _operation_id(op: Operation) -> str:
    words = [w.strip("{}") for w in op.path.strip("/").split("/") if w]
    return op.method.lower() + "_" + "_".join(w.replace("-", "_") for w in words)
