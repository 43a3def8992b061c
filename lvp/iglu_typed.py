"""One msgspec decode that parses a contexts text and checks every entity in it.

The collector's hot path used to parse an event's contexts (``co``/``cx``) with orjson and then
run one Python check per entity (:mod:`lvp.iglu`'s generated checks): ~10 µs per media event
with its three entities. For the entities whose schemas are flat objects of scalars (the media
player, the media session, the web page, the ad, ...), that check can be stated as msgspec types
(``Struct`` per schema, tagged by its Iglu URI): one decode then parses and checks the whole
contexts text in C (~2 µs).

**It may only say yes.** :meth:`TypedContexts.check` returns the number of entities when the
text is valid JSON, the contexts 1-0-0 wrapper with exactly ``schema`` and ``data``, and every
entity is valid against its schema; anything else — an entity of a schema it cannot type, a
failure, a ``\\u`` escape it leaves to orjson's reading — returns ``None`` and the caller takes
the complete path (orjson, :class:`lvp.iglu.SchemaValidator`), which decides and reports. So
each type is at least as strict as its schema (msgspec checks every occurrence of a duplicated
key, the JSON validators only the last one) and ``tests/test_iglu_typed.py`` holds its yes to
the validators' verdict.

Translated: ``type`` (string, number, integer, boolean, null, or a list of them), string
``minLength``/``maxLength``/``pattern``/``enum`` (strings and null), numeric ``minimum``/
``maximum`` (draft 4's boolean ``exclusive*``; integers within 64 bits), ``required`` (of described
properties), ``additionalProperties`` true or false (a key not described is left to the validators
either way: msgspec would skip its value unread by orjson's rules), and the formats both
validators check (:data:`lvp.iglu.FORMATS`), checked after the decode on the few fields that have
one. Any other keyword leaves the schema out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, Union

import msgspec

from lvp.events import CONTEXTS_SCHEMA
from lvp.iglu import (
    _ANNOTATIONS,
    _FAST_FORMATS,
    DOLLAR_FINDER,
    _always,
    _self_describing_object,
    flat_object_parts,
    flat_property_types,
)

_FAILS = (msgspec.MsgspecError, ValueError, RecursionError)

#: post-decode format checks of one entity type: (attribute, check) pairs
FormatChecks = tuple[tuple[str, Callable[[str], bool]], ...]


def _string_ok(value: str, lo: int | None, hi: int | None, search: Any, fmt: Callable[[str], bool]) -> bool:
    return (
        (lo is None or len(value) >= lo)
        and (hi is None or len(value) <= hi)
        and (search is None or search(value) is not None)
        and fmt(value)
    )


def _int_bounds(bounds: Mapping[str, float]) -> dict[str, Any]:
    """Inclusive integer bounds for ``bounds`` (ge/gt/le/lt), within the signed 64-bit integers
    (msgspec reads integers of any size, orjson not: a larger one is left to the validators)."""
    lo, hi = -(2**63), 2**63 - 1
    if "ge" in bounds:
        lo = max(lo, math.ceil(bounds["ge"]))
    if "gt" in bounds:
        lo = max(lo, math.floor(bounds["gt"]) + 1)
    if "le" in bounds:
        hi = min(hi, math.floor(bounds["le"]))
    if "lt" in bounds:
        hi = min(hi, math.ceil(bounds["lt"]) - 1)
    return {"ge": lo, "le": hi}


def property_type(spec: Any) -> tuple[Any, Callable[[str], bool] | None] | None:
    """(msgspec type, format check of its string values or None) accepting only what ``spec``
    (one property of a flat object) accepts; None when ``spec`` says more than this handles."""
    types = flat_property_types(spec)
    if types is None:
        return None
    fmt_name = spec.get("format")
    fmt: Callable[[str], bool] = _always
    if fmt_name is not None:
        found = _FAST_FORMATS.get(fmt_name) if isinstance(fmt_name, str) else None
        if found is None:
            return None
        fmt = found
    lo, hi, pattern = spec.get("minLength"), spec.get("maxLength"), spec.get("pattern")
    if (lo is not None and type(lo) is not int) or (hi is not None and type(hi) is not int):
        return None
    search = None
    if pattern is not None:
        if not isinstance(pattern, str):
            return None
        try:  # ``$``: the end of the string, as both validators read it
            search = re.compile(DOLLAR_FINDER.sub(r"\\Z", pattern)).search
        except re.error:
            return None
    members: list[Any] = []
    enum = spec.get("enum")
    if enum is not None:  # strings and null only, as lvp.iglu's generated checks
        if not isinstance(enum, list) or not all(e is None or isinstance(e, str) for e in enum):
            return None
        if "string" in types:
            allowed = sorted({e for e in enum if isinstance(e, str) and _string_ok(e, lo, hi, search, fmt)})
            if allowed:
                members.append(Literal[tuple(allowed)])
        if "null" in types and None in enum:
            members.append(None)
        fmt = _always  # (every allowed value was checked above)
    else:
        if "string" in types:
            given = {
                "min_length": lo,
                "max_length": hi,
                "pattern": pattern and DOLLAR_FINDER.sub(r"\\Z", pattern),
            }
            meta: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
            members.append(Annotated[str, msgspec.Meta(**meta)] if meta else str)
        if "number" in types or "integer" in types:
            bounds: dict[str, Any] = {}
            for key, exclusive, inclusive_name, exclusive_name in (
                ("minimum", "exclusiveMinimum", "ge", "gt"),
                ("maximum", "exclusiveMaximum", "le", "lt"),
            ):
                bound, flag = spec.get(key), spec.get(exclusive, False)
                if flag is not False and flag is not True:
                    return None
                if bound is not None:
                    if type(bound) not in (int, float):
                        return None
                    bounds[exclusive_name if flag else inclusive_name] = bound
            if "number" in types:  # (a JSON integer fits a float field too)
                members.append(Annotated[float, msgspec.Meta(**bounds)] if bounds else float)
            else:
                members.append(Annotated[int, msgspec.Meta(**_int_bounds(bounds))])
        if "boolean" in types:
            members.append(bool)
        if "null" in types:
            members.append(None)
    if not members:
        return None  # (nothing is accepted: leave it to the validators)
    kind: Any = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
    return kind, (None if fmt is _always else fmt)


def entity_type(uri: str, schema: Mapping[str, Any]) -> tuple[type[msgspec.Struct], FormatChecks] | None:
    """The tagged struct ``{"schema": uri, "data": {...}}`` for a flat schema, with its format
    checks; None for a schema this module does not translate."""
    parts = flat_object_parts(schema)
    if parts is None:
        return None
    props, required, _extra = parts  # (a key not described is left to the validators either way)
    fields: list[Any] = []
    rename: dict[str, str] = {}
    checks: list[tuple[str, Callable[[str], bool]]] = []
    if not set(required) <= set(props):
        return None  # (a required name without a description: any value; left to the validators)
    for n, name in enumerate(sorted(props)):
        attr = f"f{n}"  # JSON names need not be identifiers
        rename[attr] = name
        typed = property_type(props[name])
        if typed is None:
            return None
        kind, fmt = typed
        if fmt is not None:
            checks.append((attr, fmt))
        if name in required:
            fields.append((attr, kind))
        else:
            fields.append((attr, Union[kind, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
    try:
        data = msgspec.defstruct("Data", fields, kw_only=True, rename=rename, forbid_unknown_fields=True)
        wrapper = msgspec.defstruct(
            "Entity", [("data", data)], tag_field="schema", tag=uri, forbid_unknown_fields=True
        )
        msgspec.json.Decoder(wrapper)  # (msgspec refuses some unions: leave the schema out)
    except (TypeError, ValueError):
        return None
    return wrapper, tuple(checks)


class TypedContexts:
    """The contexts 1-0-0 wrapper over every entity schema that translates (see the module)."""

    def __init__(self, decode: Callable[[str], Any], formats: dict[type, FormatChecks], schemas: int) -> None:
        self._decode = decode
        self._formats = formats
        #: entity schemas typed
        self.schemas = schemas

    @classmethod
    def build(
        cls, contexts_schema: Mapping[str, Any], entity_schemas: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> TypedContexts | None:
        """From the contexts 1-0-0 schema (an array of ``{schema, data}`` items whose ``schema``
        matches a pattern, with ``minItems``/``maxItems``) and ``(uri, schema)`` of the entity
        schemas; None when the wrapper has another shape or no entity schema translates."""
        if set(contexts_schema) - _ANNOTATIONS - {"type", "items", "minItems", "maxItems"}:
            return None
        items = contexts_schema.get("items")
        lo, hi = contexts_schema.get("minItems", 0), contexts_schema.get("maxItems")
        if (
            contexts_schema.get("type") != "array"
            or type(lo) is not int
            or (hi is not None and type(hi) is not int)
        ):
            return None
        uri_rx = _self_describing_object(items)
        if uri_rx is None:
            return None
        members: list[type[msgspec.Struct]] = []
        formats: dict[type, FormatChecks] = {}
        for uri, schema in entity_schemas:
            if uri_rx.search(uri) is None:
                continue
            typed = entity_type(uri, schema)
            if typed is None:
                continue
            struct, checks = typed
            members.append(struct)
            if checks:
                formats[struct] = checks
        if not members:
            return None
        lengths: dict[str, Any] = {"min_length": lo} if hi is None else {"min_length": lo, "max_length": hi}
        meta = msgspec.Meta(**lengths)
        entity: Any = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        wrapper = msgspec.defstruct(
            "Contexts",
            [("data", Annotated[list[entity], meta])],  # type: ignore[valid-type]
            tag_field="schema",
            tag=CONTEXTS_SCHEMA,
            forbid_unknown_fields=True,
        )
        return cls(msgspec.json.Decoder(wrapper).decode, formats, len(members))

    def check(self, text: str) -> int | None:
        """The number of entities when ``text`` is a valid contexts 1-0-0 value whose every entity
        is valid; None when this cannot say (the complete path decides)."""
        if "\\u" in text:  # escapes: orjson's reading decides (lone surrogates, ...)
            return None
        try:
            doc = self._decode(text)
        except _FAILS:
            return None
        entities = doc.data
        formats = self._formats
        if formats:
            for entity in entities:
                checks = formats.get(type(entity))
                if checks is not None:
                    data = entity.data
                    for attr, ok in checks:
                        value = getattr(data, attr)
                        if type(value) is str and not ok(value):
                            return None
        return len(entities)
