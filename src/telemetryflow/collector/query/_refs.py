"""Resource and scope of a span or log row, as the query APIs return them.

Spans and logs refer to the deduplicated ``resources`` and ``scopes`` tables; queries
``LEFT JOIN`` them with :data:`REF_COLUMNS` and hand those columns to
:class:`RefReader`, which parses each distinct resource and scope once per query.
Rows written by schema version 1 carry no reference: their inline resource JSON and
scope name are used instead.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["REF_COLUMNS", "REF_JOINS", "RefReader"]

REF_COLUMNS = "t.resource, t.scope, r.id, r.attributes, c.id, c.name, c.version, c.attributes"
"""Eight columns, to be selected last; the table must be aliased ``t``."""
REF_JOINS = "LEFT JOIN resources r ON r.id = t.resource_id LEFT JOIN scopes c ON c.id = t.scope_id"


class RefReader:
    """Builds ``resource`` (its attributes) and ``scope`` (name, version, attributes)."""

    def __init__(self) -> None:
        self._resources: dict[int, dict[str, Any]] = {}
        self._scopes: dict[int, dict[str, Any]] = {}

    def read(self, cols: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``cols`` are the :data:`REF_COLUMNS` of one row."""
        legacy_resource, legacy_scope, rid, rattrs, sid, name, version, sattrs = cols
        if rid is None:
            resource = json.loads(legacy_resource) if legacy_resource else {}
        else:
            resource = self._resources.get(rid) or self._resources.setdefault(
                rid, json.loads(rattrs)
            )
        if sid is None:
            scope = {"name": legacy_scope, "version": "", "attributes": {}}
        else:
            scope = self._scopes.get(sid) or self._scopes.setdefault(
                sid, {"name": name, "version": version, "attributes": json.loads(sattrs)}
            )
        return resource, scope
