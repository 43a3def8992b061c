"""The Iglu schema repository and its compiled validators.

Schemas are laid out like an Iglu static repository, ``<root>/schemas/<vendor>/<name>/jsonschema/
<version>``, each file an Iglu self-describing JSON Schema (draft 4, ``$schema`` = Iglu's self-desc
meta-schema, a ``self`` block naming the schema). The project's own schemas are bundled in
``lvp/iglu_schemas/schemas``; ``LVP_SCHEMA_DIRS`` adds roots (a later root wins over an earlier one and
over the bundled repository).

Two validators, one semantics: each schema is compiled once with fastjsonschema (the hot path,
microseconds per instance) and, only for instances that fail, checked again with jsonschema's
``Draft4Validator`` for precise error messages. Both run JSON Schema draft 4 with the same
``format`` checks (:data:`FORMATS`: ``date-time``, ``email``, ``ipv4``, ``ipv6``, ``uri``; every
other format is ignored by both) and the same ECMA-262 reading of ``$`` in ``pattern`` (end of
input, not "before a final newline").
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import fastjsonschema
import jsonschema
import orjson
from fastjsonschema.draft04 import DOLLAR_FINDER, CodeGeneratorDraft04
from jsonschema import Draft4Validator
from jsonschema.validators import extend
from referencing import Registry as RefRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT4 as REF_DRAFT4

if TYPE_CHECKING:
    from lvp.iglu_resolver import Lookup, Resolver
    from lvp.iglu_typed import TypedContexts

log = logging.getLogger(__name__)

IGLU_META_SCHEMA = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
DRAFT4 = "http://json-schema.org/draft-04/schema#"
BUNDLED_ROOT = Path(__file__).resolve().parent / "iglu_schemas"

_URI_RE = re.compile(
    r"^iglu:([a-zA-Z0-9\-_.]+)/([a-zA-Z0-9\-_]+)/([a-zA-Z0-9\-_]+)/([1-9][0-9]*)-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)\Z"
)


class IgluError(ValueError):
    """A schema URI, file or reference is malformed."""


class UnknownSchema(IgluError):
    """No schema with this key is in the registry."""


class ResolutionFailed(IgluError):
    """The resolver's repositories did not give a usable schema (unreachable, still looking, or
    a schema that fails the Iglu meta-schema); the message says what each repository answered."""


class SchemaKey(NamedTuple):
    vendor: str
    name: str
    format: str
    version: str

    @classmethod
    def parse(cls, uri: str) -> SchemaKey:
        """``iglu:vendor/name/format/M-R-A`` -> key; raises :class:`IgluError`."""
        m = _URI_RE.match(uri) if isinstance(uri, str) else None
        if m is None:
            raise IgluError(f"not an Iglu schema URI (iglu:vendor/name/format/M-R-A): {uri!r}")
        return cls(m.group(1), m.group(2), m.group(3), f"{m.group(4)}-{m.group(5)}-{m.group(6)}")

    @property
    def uri(self) -> str:
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version}"

    @property
    def path(self) -> str:
        return f"{self.vendor}/{self.name}/{self.format}/{self.version}"

    @property
    def model(self) -> int:
        return int(self.version.split("-", 1)[0])


# --- format checks shared by both validators ----------------------------------------------------

_DATE_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))\Z", re.ASCII
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\Z")
_URI_FORMAT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\x00-\x1f\x7f]*\Z")


_DATE_TIME_SEEN: dict[str, bool] = {}


def is_date_time(value: str) -> bool:
    """RFC 3339 ``date-time`` (``2024-11-16T13:33:22.625Z``, an offset, or ``z``). Results are
    cached: the same timestamps (a media session's ``startedAt``) repeat on every event."""
    hit = _DATE_TIME_SEEN.get(value)
    if hit is None:
        if len(_DATE_TIME_SEEN) >= 10_000:
            _DATE_TIME_SEEN.clear()
        hit = _DATE_TIME_SEEN[value] = _is_date_time(value)
    return hit


def _is_date_time(value: str) -> bool:
    m = _DATE_TIME_RE.match(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        date(year, month, day)
    except ValueError:
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    return not (m.group(7) is not None and (int(m.group(7)) > 23 or int(m.group(8)) > 59))


def is_email(value: str) -> bool:
    return _EMAIL_RE.match(value) is not None


def is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def is_ipv6(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return "%" not in value


def is_uri(value: str) -> bool:
    """An absolute URI: a scheme, a colon, no whitespace or control characters."""
    return _URI_FORMAT_RE.match(value) is not None


#: The formats both validators check; any other ``format`` is ignored by both.
FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": is_date_time,
    "email": is_email,
    "ipv4": is_ipv4,
    "ipv6": is_ipv6,
    "uri": is_uri,
}


def _always(_: str) -> bool:
    return True


# fastjsonschema checks its own built-in formats unless overridden: neutralize the ones not in FORMATS.
_FAST_FORMATS: dict[str, Callable[[str], bool]] = {
    **{name: _always for name in [*CodeGeneratorDraft04.FORMAT_REGEXS, "regex"]},
    **FORMATS,
}


def _strings_only(fn: Callable[[str], bool]) -> Callable[[object], bool]:
    # a format constrains strings only (fastjsonschema never calls it with anything else)
    return lambda value: not isinstance(value, str) or fn(value)


FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
for _name, _fn in FORMATS.items():
    FORMAT_CHECKER.checks(_name)(_strings_only(_fn))


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    """``pattern`` with ``$`` meaning end of input, exactly as fastjsonschema compiles it."""
    if isinstance(instance, str) and not re.search(DOLLAR_FINDER.sub(r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


IgluDraft4Validator = extend(Draft4Validator, {"pattern": _ecma_pattern})


# --- validators ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """One precise validation failure (shaped like Snowplow's ``dataReports`` entries)."""

    message: str
    path: str
    keyword: str
    targets: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "path": self.path,
            "keyword": self.keyword,
            "targets": list(self.targets),
        }


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


_ANNOTATIONS = frozenset(("description", "title", "$schema", "self", "id", "$id", "$comment"))


def _flat_string_object(schema: Any) -> tuple[frozenset[str], frozenset[str]] | None:
    """(allowed, required) when ``schema`` only says: an object of string properties from a fixed
    list, some required, nothing else (the shape of payload_data's events)."""
    if not isinstance(schema, dict) or set(schema) - _ANNOTATIONS - {
        "type", "properties", "required", "additionalProperties"
    }:  # fmt: skip
        return None
    props = schema.get("properties")
    if (
        schema.get("type") != "object"
        or schema.get("additionalProperties") is not False
        or not isinstance(props, dict)
    ):
        return None
    if any(
        not isinstance(p, dict) or set(p) - _ANNOTATIONS != {"type"} or p["type"] != "string"
        for p in props.values()
    ):
        return None
    required = schema.get("required", [])
    if not isinstance(required, list) or not set(required) <= set(props):
        return None
    return frozenset(props), frozenset(required)


def _self_describing_object(schema: Any) -> re.Pattern[str] | None:
    """The compiled ``schema`` pattern when ``schema`` only says: an object of exactly a string
    ``schema`` matching a pattern and any ``data`` (the shape of the unstruct_event and contexts
    wrappers' items)."""
    if not isinstance(schema, dict) or set(schema) - _ANNOTATIONS - {
        "type", "properties", "required", "additionalProperties"
    }:  # fmt: skip
        return None
    props = schema.get("properties")
    if (
        schema.get("type") != "object"
        or schema.get("additionalProperties") is not False
        or not isinstance(props, dict)
        or set(props) != {"schema", "data"}
        or not isinstance(schema.get("required"), list)
        or set(schema["required"]) != {"schema", "data"}
    ):
        return None
    data, uri = props["data"], props["schema"]
    if not isinstance(data, dict) or set(data) - _ANNOTATIONS:
        return None
    if not isinstance(uri, dict) or set(uri) - _ANNOTATIONS != {"type", "pattern"} or uri["type"] != "string":
        return None
    pattern = uri["pattern"]
    return re.compile(DOLLAR_FINDER.sub(r"\\Z", pattern)) if isinstance(pattern, str) else None


def _object_check(schema: Any) -> Callable[[Any], bool] | None:
    flat = _flat_string_object(schema)
    if flat is not None:
        allowed, required = flat
        is_str = str.__instancecheck__

        def check_flat(d: Any) -> bool:
            return (
                isinstance(d, dict)
                and allowed.issuperset(d)
                and required.issubset(d)
                and all(map(is_str, d.values()))
            )

        return check_flat
    rx = _self_describing_object(schema)
    if rx is not None:
        search = rx.search
        seen: dict[str, bool] = {}  # the same few schema URIs come again and again

        def check_self_describing(d: Any) -> bool:
            if not isinstance(d, dict) or len(d) != 2 or "data" not in d:
                return False
            uri = d.get("schema")
            if not isinstance(uri, str):
                return False
            ok = seen.get(uri)
            if ok is None:
                if len(seen) >= 1024:
                    seen.clear()
                ok = seen[uri] = search(uri) is not None
            return ok

        return check_self_describing
    return None


#: what a property of a flat object may say for :func:`_flat_object_accept` (annotations aside)
_FLAT_PROPERTY_KEYWORDS = frozenset(
    ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "enum")
) | {"pattern", "format", "default"}
_FLAT_TYPES = frozenset(("string", "number", "integer", "boolean", "null"))


def flat_object_parts(schema: Any) -> tuple[dict[str, Any], list[str], bool] | None:
    """(properties, required, additionalProperties) of a schema that says nothing but ``type:
    object`` with those three (annotations aside), each well-formed; None for any other schema.
    What the generated checks (here and :mod:`lvp.iglu_typed`) start from."""
    if (
        not isinstance(schema, dict)
        or set(schema) - _ANNOTATIONS - {"type", "properties", "required", "additionalProperties"}
        or schema.get("type") != "object"
    ):
        return None
    props, required = schema.get("properties", {}), schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if (
        not isinstance(props, dict)
        or not isinstance(required, list)
        or not all(isinstance(r, str) for r in required)
        or (extra is not True and extra is not False)
    ):
        return None
    return props, required, extra


def flat_property_types(spec: Any) -> list[str] | None:
    """The JSON types a property of a flat object allows, when it says nothing but what the
    generated checks handle (:data:`_FLAT_PROPERTY_KEYWORDS`, scalar types); else None."""
    if not isinstance(spec, dict) or set(spec) - _ANNOTATIONS - _FLAT_PROPERTY_KEYWORDS:
        return None
    types = spec.get("type")
    types = [types] if isinstance(types, str) else types
    if not isinstance(types, list) or not types or set(types) - _FLAT_TYPES:
        return None
    return types


def _flat_property_code(name: str, spec: Any, ns: dict[str, Any]) -> list[str] | None:
    """The lines checking one property of a flat object (``v`` its value), or None when the
    property says something :func:`_flat_object_accept` does not handle."""
    types = flat_property_types(spec)
    if types is None:
        return None
    n = len(ns)
    fail = "return _fb(d)"
    enum = spec.get("enum")
    if enum is not None:  # strings and null only (JSON equality differs from Python's for numbers)
        if not isinstance(enum, list) or not all(e is None or isinstance(e, str) for e in enum):
            return None
        ns[f"_e{n}"] = frozenset(e for e in enum if isinstance(e, str))
        types = [t for t in types if t == "string" or (t == "null" and None in enum)]
    branches: list[tuple[str, list[str]]] = []
    if "string" in types:
        body = []
        lo, hi = spec.get("minLength"), spec.get("maxLength")
        for bound, op in ((lo, "<"), (hi, ">")):
            if bound is not None:
                if type(bound) is not int:
                    return None
                body.append(f"if len(v) {op} {bound}: {fail}")
        if enum is not None:
            body.append(f"if v not in _e{n}: {fail}")
        pattern = spec.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                return None
            try:  # as fastjsonschema compiles it (``$``: the end of the string)
                ns[f"_p{n}"] = re.compile(DOLLAR_FINDER.sub(r"\\Z", pattern)).search
            except re.error:
                return None
            body.append(f"if _p{n}(v) is None: {fail}")
        fmt = spec.get("format")
        if fmt is not None:
            if fmt not in _FAST_FORMATS:
                return None
            ns[f"_f{n}"] = _FAST_FORMATS[fmt]
            body.append(f"if not _f{n}(v): {fail}")
        branches.append(("t is str", body))
    numeric = "int" if "number" not in types and "integer" in types else "num" if "number" in types else ""
    if numeric:
        body = []
        for key, exclusive, op, xop in (
            ("minimum", "exclusiveMinimum", ">=", ">"),
            ("maximum", "exclusiveMaximum", "<=", "<"),
        ):  # written as what must hold, so that NaN fails
            bound = spec.get(key)
            flag = spec.get(exclusive, False)
            if flag is not False and flag is not True:
                return None
            if bound is not None:
                if type(bound) not in (int, float):
                    return None
                ns[f"_{key[:3]}{n}"] = bound
                body.append(f"if not v {xop if flag else op} _{key[:3]}{n}: {fail}")
        # draft 4: an integer is a JSON number without a fraction (orjson: int); bool is no number
        branches.append(("t is int" if numeric == "int" else "t is int or t is float", body))
    if "boolean" in types:
        branches.append(("t is bool", []))
    if "null" in types:
        branches.append(("v is None", []))
    lines = [f"v = d.get({name!r}, _M)", "if v is not _M:", "    t = type(v)"]
    for k, (cond, body) in enumerate(branches):
        lines.append(f"    {'if' if k == 0 else 'elif'} {cond}:")
        lines += [f"        {b}" for b in body] or ["        pass"]
    lines += ["    else:", f"        {fail}"] if branches else [f"    {fail}"]
    return lines


def _flat_object_accept(schema: Any, fallback: Callable[[Any], bool]) -> Callable[[Any], bool] | None:
    """A generated check for objects of scalar properties (the media entities' shape): it accepts
    only what the schema accepts (string, number, integer, boolean and null properties with
    bounds, lengths, string enums, patterns and formats, as fastjsonschema checks them) and hands
    everything else, a failure included, to ``fallback`` (the complete validator) for the verdict.
    None for any other schema. Tests hold it to both validators' verdicts."""
    parts = flat_object_parts(schema)
    if parts is None:
        return None
    props, required, extra = parts
    ns: dict[str, Any] = {"_M": object(), "_fb": fallback}
    lines = ["def accept(d):", "    if type(d) is not dict: return _fb(d)"]
    if extra is False:
        ns["_allowed"] = frozenset(props)
        lines.append("    if not _allowed.issuperset(d): return _fb(d)")
    if required:
        ns["_required"] = frozenset(required)
        lines.append("    if not _required.issubset(d): return _fb(d)")
    for name, spec in props.items():
        code = _flat_property_code(name, spec, ns)
        if code is None:
            return None
        lines += [f"    {line}" for line in code]
    lines.append("    return True")
    exec("\n".join(lines), ns)  # from the schema's keywords only (names as repr literals)
    accept: Callable[[Any], bool] = ns["accept"]
    return accept


def _fast_shape_check(schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """A check equivalent to the schema for the envelope shapes every event goes through (flat
    string objects like payload_data's events, self-describing ``{schema, data}`` wrappers, and
    arrays of either with ``minItems``/``maxItems``); ``None`` for any other schema, which then
    runs compiled by fastjsonschema. Tests hold these to both validators' verdicts."""
    check = _object_check(schema)
    if check is not None:
        return check
    if (
        set(schema) - _ANNOTATIONS - {"type", "items", "minItems", "maxItems"}
        or schema.get("type") != "array"
    ):
        return None
    check_item = _object_check(schema.get("items"))
    lo, hi = schema.get("minItems", 0), schema.get("maxItems")
    if check_item is None or type(lo) is not int or (hi is not None and type(hi) is not int):
        return None
    item_check = check_item

    def check_array(a: Any) -> bool:
        return (
            isinstance(a, list) and len(a) >= lo and (hi is None or len(a) <= hi) and all(map(item_check, a))
        )

    return check_array


class SchemaValidator:
    """One schema compiled once: ``is_valid`` on the hot path, ``errors`` for what fails."""

    __slots__ = ("_fast", "_precise", "fast_check", "key", "schema")

    def __init__(self, key: SchemaKey, schema: Mapping[str, Any], registry: Registry) -> None:
        self.key = key
        self.schema = dict(schema)
        body = {k: v for k, v in schema.items() if k not in ("$schema", "self")}
        body["$schema"] = DRAFT4
        handlers = {
            "iglu": registry._ref_handler,
            "http": registry._ref_handler,
            "https": registry._ref_handler,
        }
        try:
            self._fast = fastjsonschema.compile(
                body, handlers=handlers, formats=_FAST_FORMATS, use_default=False, detailed_exceptions=False
            )
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise IgluError(f"{key.uri}: cannot compile: {exc}") from None
        self._precise = IgluDraft4Validator(
            body, format_checker=FORMAT_CHECKER, registry=registry._ref_registry
        )
        shape = _fast_shape_check(body)
        flat = _flat_object_accept(body, self._compiled_check) if shape is None else None
        #: the cheapest equivalent check: a shape check for the envelopes, a generated one for flat
        #: objects of scalars (falling back to the compiled one), else the compiled one
        self.fast_check: Callable[[Any], bool] = (
            shape if shape is not None else flat if flat is not None else self._compiled_check
        )

    def _compiled_check(self, instance: Any) -> bool:
        try:
            self._fast(instance)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def is_valid(self, instance: Any) -> bool:
        return self.fast_check(instance)

    __call__ = is_valid

    def errors(self, instance: Any) -> list[Failure]:
        """Every failure, precise (empty when the instance is valid)."""
        out = []
        for err in sorted(self._precise.iter_errors(instance), key=lambda e: list(e.absolute_path)):
            targets: tuple[str, ...] = ()
            if err.validator in ("required", "additionalProperties") and isinstance(err.instance, dict):
                if err.validator == "required":
                    targets = tuple(str(t) for t in err.validator_value if t not in err.instance)
                else:
                    props = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
                    targets = tuple(sorted(str(k) for k in err.instance if k not in props))
            out.append(Failure(err.message, _json_path(err.absolute_path), str(err.validator), targets))
        if not out and not self.is_valid(instance):  # cannot happen when both agree; never hide a failure
            out.append(Failure("instance is not valid", "$", "unknown"))
        return out

    def validate(self, instance: Any) -> list[Failure]:
        """``[]`` when valid (fast path), else the precise failures."""
        if self.is_valid(instance):
            return []
        return self.errors(instance)


# --- the registry ----------------------------------------------------------------------------------


def _schemas_dir(root: Path) -> Path:
    sub = root / "schemas"
    return sub if sub.is_dir() else root


#: Iglu's meta-schema for self-describing schemas (``com.snowplowanalytics.self-desc/schema/
#: jsonschema/1-0-0``): a draft-4 JSON Schema whose ``self`` block names the schema. Every schema
#: read from a folder or fetched from a repository is checked against it before use.
SELF_DESC_META_SCHEMA: dict[str, Any] = {
    "$schema": DRAFT4,
    "description": "An Iglu self-describing JSON Schema: a draft-4 schema with a `self` block",
    "allOf": [{"$ref": DRAFT4}],
    "type": "object",
    "properties": {
        "$schema": {"type": "string", "enum": [IGLU_META_SCHEMA]},
        "self": {
            "type": "object",
            "properties": {
                "vendor": {"type": "string", "pattern": "^[a-zA-Z0-9\\-_.]+$"},
                "name": {"type": "string", "pattern": "^[a-zA-Z0-9\\-_]+$"},
                "format": {"type": "string", "pattern": "^[a-zA-Z0-9\\-_]+$"},
                "version": {"type": "string", "pattern": "^[1-9][0-9]*-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$"},
            },
            "required": ["vendor", "name", "format", "version"],
            "additionalProperties": False,
        },
    },
    "required": ["$schema", "self"],
}
_META_VALIDATOR = Draft4Validator(
    SELF_DESC_META_SCHEMA,
    registry=RefRegistry().with_resource(  # type: ignore[call-arg]
        DRAFT4, Resource.from_contents(Draft4Validator.META_SCHEMA, default_specification=REF_DRAFT4)
    ),
)


def check_schema_document(
    doc: Any, where: str, expected: SchemaKey | None = None, read_as: str | None = None
) -> dict[str, Any]:
    """Check one Iglu self-describing schema (a file's or a repository's answer) against the Iglu
    meta-schema; ``expected`` is the key it was read or fetched as. Raises :class:`IgluError`."""
    if not isinstance(doc, dict):
        raise IgluError(f"{where}: a schema must be a JSON object")
    self_ = doc.get("self")
    if not isinstance(self_, dict) or not all(isinstance(self_.get(k), str) for k in SchemaKey._fields):
        raise IgluError(f"{where}: no `self` block with vendor, name, format and version")
    key = SchemaKey(self_["vendor"], self_["name"], self_["format"], self_["version"])
    try:
        SchemaKey.parse(key.uri)
    except IgluError:
        raise IgluError(f"{where}: `self` does not name a valid schema: {key.uri}") from None
    if expected is not None and key != expected:
        read_as = read_as or f"it was asked for as {expected.uri}"
        raise IgluError(f"{where}: `self` says {key.uri} but {read_as}")
    if doc.get("$schema") != IGLU_META_SCHEMA:
        raise IgluError(f"{where}: `$schema` must be {IGLU_META_SCHEMA}")
    body = {k: v for k, v in doc.items() if k not in ("$schema", "self")}
    try:
        Draft4Validator.check_schema(body)
    except jsonschema.SchemaError as exc:
        raise IgluError(f"{where}: not a valid JSON Schema draft 4: {exc.message}") from None
    meta_error = jsonschema.exceptions.best_match(_META_VALIDATOR.iter_errors(doc))
    if meta_error is not None:
        at = _json_path(meta_error.absolute_path)
        raise IgluError(f"{where}: fails the Iglu meta-schema at {at}: {meta_error.message}")
    return doc


def load_schema_file(path: Path, expected: SchemaKey | None = None) -> dict[str, Any]:
    """Read and check one Iglu self-describing schema file; raises :class:`IgluError`."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise IgluError(f"{path}: not readable JSON: {exc}") from None
    where = f"the file is at {expected.path}" if expected is not None else None
    return check_schema_document(doc, str(path), expected, where)


class _Remote:
    """A validator of a schema a resolver fetched: fresh until ``expires`` (its cache entry's);
    after that, ``check`` answers ``False`` so the caller takes the slow path, which asks the
    resolver again (getting the stale schema at once while it is refreshed)."""

    __slots__ = ("clock", "error", "expires", "fast", "schema", "validator")

    def __init__(
        self,
        lookup: Lookup,
        validator: SchemaValidator | None,
        error: IgluError | None,
        clock: Callable[[], float],
    ) -> None:
        self.schema = lookup.schema
        self.expires = lookup.expires
        self.validator = validator
        self.error = error
        self.fast = validator.fast_check if validator is not None else None
        self.clock = clock

    def check(self, instance: Any) -> bool:
        fast = self.fast
        return fast is not None and self.clock() < self.expires and fast(instance)


class Registry:
    """Iglu schemas by key; each validator compiled on first use and kept.

    With a :class:`~lvp.iglu_resolver.Resolver`, a schema that is neither bundled nor in the
    roots is looked up in the resolver's repositories (waiting at most ``lookup_wait`` seconds
    for one not yet known; see :mod:`lvp.iglu_resolver`)."""

    def __init__(
        self,
        roots: Iterable[Path | str] = (),
        *,
        bundled: bool = True,
        resolver: Resolver | None = None,
        lookup_wait: float = 1.0,
    ) -> None:
        self._schemas: dict[SchemaKey, dict[str, Any]] = {}
        self._validators: dict[str, SchemaValidator] = {}
        #: URI -> fast boolean check, for every validator compiled so far (the hot path's lookup)
        self.fast_checks: dict[str, Callable[[Any], bool]] = {}
        self._key_cache: dict[str, SchemaKey] = {}
        self._ref_registry: RefRegistry[Any] = RefRegistry(retrieve=self._retrieve)  # type: ignore[call-arg]
        self.resolver = resolver
        self.lookup_wait = lookup_wait
        self._remote: dict[str, _Remote] = {}
        self._typed: Any = None  # TypedContexts, False when none can be built, None: not yet
        all_roots = ([BUNDLED_ROOT] if bundled else []) + [Path(r) for r in roots]
        for root in all_roots:
            self._load_root(Path(root))

    @classmethod
    def from_settings(cls, settings: Any) -> Registry:
        resolver = None
        if getattr(settings, "iglu_resolver", ""):
            from lvp.iglu_resolver import Resolver, ResolverConfig

            config = ResolverConfig.load(settings.iglu_resolver)
            resolver = Resolver(config, timeout=settings.iglu_timeout_s)
            log.info(
                "iglu resolver %s: repositories %s, cacheSize %d, cacheTtl %s",
                settings.iglu_resolver,
                ", ".join(f"{r.name} ({r.kind}, priority {r.priority})" for r in config.repositories),
                config.cache_size,
                config.cache_ttl,
            )
        wait = float(getattr(settings, "iglu_timeout_s", 1.0))
        return cls(settings.schema_dir_list, resolver=resolver, lookup_wait=wait)

    def _load_root(self, root: Path) -> None:
        base = _schemas_dir(root)
        if not base.is_dir():
            raise IgluError(f"schema directory {root} does not exist")
        for path in sorted(base.glob("*/*/*/*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            rel = path.relative_to(base).parts
            key = SchemaKey(*rel)
            try:
                SchemaKey.parse(key.uri)
            except IgluError:
                raise IgluError(f"{path}: not laid out as <vendor>/<name>/<format>/<M-R-A>") from None
            doc = load_schema_file(path, key)
            if key in self._schemas:
                log.info("schema %s from %s replaces an earlier one", key.uri, root)
            self._schemas[key] = doc

    # -- lookups --
    def __contains__(self, uri: object) -> bool:
        """Known now (bundled, a root, or fetched and cached); never looks anything up."""
        try:
            if not isinstance(uri, str):
                return False
            if SchemaKey.parse(uri) in self._schemas:
                return True
        except IgluError:
            return False
        remote = self._remote.get(uri)
        return remote is not None and remote.validator is not None

    def __len__(self) -> int:
        return len(self._schemas)

    def keys(self) -> list[SchemaKey]:
        return sorted(self._schemas)

    def schema(self, uri: str) -> dict[str, Any]:
        key = SchemaKey.parse(uri)
        try:
            return self._schemas[key]
        except KeyError:
            raise UnknownSchema(f"schema {uri} is not in the registry") from None

    def validator(self, uri: str) -> SchemaValidator:
        """The compiled validator of ``uri``; raises :class:`UnknownSchema` / :class:`IgluError`."""
        v = self._validators.get(uri)
        if v is None:
            key = SchemaKey.parse(uri)
            doc = self._schemas.get(key)
            if doc is None:
                if self.resolver is None:
                    raise UnknownSchema(f"schema {uri} is not in the registry")
                return self._remote_validator(uri, key)
            v = SchemaValidator(key, doc, self)
            self._validators[uri] = v
            self.fast_checks[uri] = v.fast_check
        return v

    def _lookup(self, uri: str, key: SchemaKey) -> Lookup:
        assert self.resolver is not None
        found = self.resolver.resolve(key, self.lookup_wait)
        from lvp.iglu_resolver import Pending  # loaded with the resolver (no import cycle at start)

        if isinstance(found, Pending):
            raise ResolutionFailed(
                f"schema {uri}: its lookup did not finish within {self.lookup_wait} s "
                "(it goes on in the background; later events will find it if it exists)"
                if found.waited > 0
                else f"schema {uri}: not waited for while a repository is slow to answer "
                "(its lookup goes on in the background; later events will find it if it exists)"
            )
        if found.schema is None:
            cls = UnknownSchema if found.not_found else ResolutionFailed
            raise cls(f"schema {uri} was not found: {found.reason()}")
        return found

    def _remote_validator(self, uri: str, key: SchemaKey) -> SchemaValidator:
        found = self._lookup(uri, key)
        remote = self._remote.get(uri)
        if remote is None or remote.schema is not found.schema:
            validator, error = None, None
            try:
                validator = SchemaValidator(key, found.schema or {}, self)
            except IgluError as exc:
                error = exc
            assert self.resolver is not None
            remote = _Remote(found, validator, error, self.resolver.clock)
            self._remote[uri] = remote
            self.fast_checks[uri] = remote.check
            if validator is not None:
                log.info("schema %s fetched from %s", uri, found.repository)
        else:
            remote.expires = found.expires
        if remote.validator is None:
            raise ResolutionFailed(f"schema {uri} from {found.repository}: {remote.error}")
        return remote.validator

    def key_of(self, uri: str) -> SchemaKey:
        """``SchemaKey.parse`` with a cache (the same URIs come with every event)."""
        key = self._key_cache.get(uri)
        if key is None:
            key = SchemaKey.parse(uri)
            if len(self._key_cache) < 10_000:
                self._key_cache[uri] = key
        return key

    def validate(self, uri: str, instance: Any) -> list[Failure]:
        """``[]`` when ``instance`` is valid against ``uri``; raises :class:`UnknownSchema`."""
        return self.validator(uri).validate(instance)

    def typed_contexts(self) -> TypedContexts | None:
        """One msgspec decode checking a contexts text against the local schemas that it can type
        (:mod:`lvp.iglu_typed`), built on first use; None when there is none."""
        if self._typed is None:
            from lvp.events import CONTEXTS_SCHEMA
            from lvp.iglu_typed import TypedContexts

            wrapper = self._schemas.get(SchemaKey.parse(CONTEXTS_SCHEMA))
            entities = [(key.uri, doc) for key, doc in self._schemas.items()]
            built = TypedContexts.build(wrapper, entities) if wrapper is not None else None
            self._typed = built if built is not None else False
        return self._typed or None

    def compile_all(self) -> int:
        """Compile every schema now (startup check); returns how many."""
        for key in self._schemas:
            self.validator(key.uri)
        return len(self._schemas)

    # -- $ref resolution (both validators): only schemas of this registry, never the network --
    def _retrieve(self, uri: str) -> Resource[Any]:
        return Resource.from_contents(self._ref_handler(uri), default_specification=REF_DRAFT4)

    def _ref_handler(self, uri: str) -> dict[str, Any]:
        if uri.startswith("iglu:"):
            key = SchemaKey.parse(uri.split("#", 1)[0])
        else:
            m = re.match(r"^https?://iglucentral\.com/schemas/([^#]+)", uri)
            if m is None:
                raise IgluError(f"$ref to {uri} is not allowed (only iglu: and iglucentral schemas)")
            key = SchemaKey(*m.group(1).split("/"))
        doc = self._schemas.get(key)
        if doc is None and self.resolver is not None:
            doc = self._lookup(key.uri, key).schema
        if doc is None:
            raise UnknownSchema(f"$ref to {uri}: not in the registry")
        return {k: v for k, v in doc.items() if k not in ("$schema", "self")}
