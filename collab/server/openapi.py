"""The OpenAPI 3.1 description of the HTTP document API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from aiohttp import web

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_DOC = {
    "name": "doc",
    "in": "path",
    "required": True,
    "description": "document id: 1-255 of A-Z a-z 0-9 . _ ~ / -, no empty, . or .. segment",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_ERRORS = {str(code): _ERROR for code in (400, 401, 403, 404)}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Collab document API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "DocumentSummary": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "size": {"type": "integer"},
                    "snapshot_bytes": {"type": "integer"},
                    "log_count": {"type": "integer"},
                    "log_bytes": {"type": "integer"},
                    "last_seq": {"type": "integer"},
                    "created_at": {"type": "integer", "description": "unix ms"},
                    "updated_at": {"type": "integer", "description": "unix ms"},
                    "connections": {"type": "integer"},
                    "loaded": {"type": "boolean"},
                },
            }
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/docs": {
            "get": {
                "summary": "List documents (admin key, or a token for a prefix/* scope)",
                "parameters": [
                    {"name": "prefix", "in": "query", "schema": {"type": "string"}},
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "a page",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "docs": {
                                            "type": "array",
                                            "items": {
                                                "$ref": "#/components/schemas/DocumentSummary"
                                            },
                                        },
                                        "next": {"type": ["string", "null"]},
                                    },
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/api/v1/docs/{doc}": {
            "get": {
                "summary": "Document state: a Yjs update, or roots rendered as JSON or text",
                "parameters": [
                    _DOC,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["binary", "json", "text"]},
                    },
                    {
                        "name": "root",
                        "in": "query",
                        "description": "name:text|map|array|xml",
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "style": "form",
                        "explode": True,
                    },
                ],
                "responses": {
                    "200": {
                        "description": "state",
                        "content": {
                            "application/octet-stream": {},
                            "application/json": {},
                            "text/plain": {},
                        },
                    },
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Delete: live connections are closed with 4404",
                "parameters": [_DOC],
                "responses": {"204": {"description": "deleted"}, **_ERRORS},
            },
        },
        "/api/v1/docs/{doc}/update": {
            "post": {
                "summary": "Apply a binary Yjs update (stored, then broadcast)",
                "parameters": [_DOC],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "applied",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "seq": {"type": ["integer", "null"]},
                                        "changed": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                    "413": _ERROR,
                    "503": _ERROR,
                    **_ERRORS,
                },
            }
        },
        "/api/v1/docs/{doc}/compact": {
            "post": {
                "summary": "Fold the update log into the snapshot (admin)",
                "parameters": [_DOC],
                "responses": {"200": {"description": "result"}, **_ERRORS},
            }
        },
        "/api/v1/docs/{doc}/evict": {
            "post": {
                "summary": "Unload from memory, closing connections with 1013 (admin)",
                "parameters": [_DOC],
                "responses": {"200": {"description": "result"}, **_ERRORS},
            }
        },
        "/api/v1/rooms": {
            "get": {
                "summary": "Documents in memory with connections and presence (admin)",
                "responses": {"200": {"description": "rooms"}, **_ERRORS},
            }
        },
    },
}


async def serve_spec(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
