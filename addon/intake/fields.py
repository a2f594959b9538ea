"""Field types and value formats (CONTRACT §6.2): raw Projectrak values -> outgoing field values.

Pure and I/O-free: the only outside knowledge (project key -> id, Jira time-tracking settings) comes
through a ``ValueContext`` supplied by the caller; whatever it raises propagates unchanged.

Output values are a string, ``None`` (single-valued field without a value) or a list of strings.

Decisions where CONTRACT §6.2 is silent:

* ``None`` is "no value": ``None`` for single-valued types, ``[]`` for multi-valued ones.
* An empty string is "no value" for every single-valued type (as for Jira attributes, §5.2), so a
  text cleared to ``""`` and one cleared to ``null`` compare equal.  Whitespace-only text is kept.
  Inside a multi-valued list every element must have a value: ``null`` or ``""`` elements are refused.
* ``multiline_text``: an ADF document with no content (``{"type": "doc", "content": []}``) is "no value";
  any other ADF object is sent as compact JSON with its keys in the given order (a number with a fraction or
  an exponent keeps its value exactly; NaN and infinities inside it are refused).
* ``number``: strings must match the JSON-number grammar exactly (no surrounding spaces, no ``+``,
  no leading zeros, no ``1.``/``.5``).  The value is read exactly with ``Decimal`` (the request's JSON
  numbers arrive as ``Decimal``s of their literal; floats, should any come, from their shortest ``repr``),
  trailing zeros are removed and no exponent is written: ``1e3`` -> ``"1000"``,
  ``"1.50"`` -> ``"1.5"``, ``-0``/``-0.0`` -> ``"0"``.  A number whose plain form would exceed
  ``MAX_NUMBER_CHARS`` characters is refused (so ``"1e999999999"`` cannot blow up memory).
* ``date``: only JSON numbers are read as epoch ms (fractions of a millisecond are dropped towards the
  earlier instant); strings must be ``yyyy-mm-dd`` or an extended-format ISO date-time
  ``yyyy-mm-ddThh:mm[:ss[.fff]][Z|±hh[:]mm]`` (``T``, ``t`` or a space), whose written date is kept.
* ``duration``: milliseconds must be a non-negative integral value (``1.5e3`` is fine, ``1.5`` is not).
  A Jira duration is one or more ``<number><unit>`` parts, units ``w d h m s`` (any case), optionally
  separated by spaces, numbers may have a fraction (``1.5h``); the total is rounded half-up to whole ms.
  At most ``MAX_DURATION_PARTS`` parts (a unit may repeat: ``1d 1d`` is two days).
* ``priority``/``status``/``list`` objects: the first of ``name``, ``value``, ``text`` that is present and
  not ``null`` is used and must be a string.
* ``user``: any non-empty accountId string is passed through unchecked.
* ``project``: ids are positive integers (a JSON integer or a string of digits; leading zeros dropped);
  any other string is a project key (``[A-Za-z][A-Za-z0-9_]*``).  An object's ``id`` wins over its ``key``.
  A key the context does not know (it raises ``UnknownProjectKey``) is refused at the value's path.
* Field ids are JSON integers (not booleans) in the signed 64-bit range; negative ids are passed through.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Protocol, TypeGuard

MAX_CHANGES = 500
MAX_NUMBER_CHARS = 400
"""Longest plain decimal accepted for a number (a double's range needs at most ~330)."""

MAX_DURATION_PARTS = 20
"""Most ``<number><unit>`` parts in a Jira duration (Jira writes at most one per unit: ``2w 3d 4h 30m 10s``)."""

_MAX_FIELD_ID = 2**63 - 1

Value = str | list[str] | None


class UnknownProjectKey(LookupError):
    """Raised by a ``ValueContext``: a ``project``-type value names a key Jira does not know."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class ChangeError(ValueError):
    """A change that does not fit the contract; ``path`` names the bad part, e.g. ``changes[3].field.type``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class TimeTracking:
    """A tenant's Jira time-tracking settings, used to read durations such as ``2w 3d``."""

    hours_per_day: float = 8
    days_per_week: float = 5


class ValueContext(Protocol):
    """What normalising values needs from outside (Jira, per tenant)."""

    def project_id_for_key(self, key: str) -> str:
        """The id of the project with this key; may raise (not found, Jira unavailable, ...)."""
        ...

    def time_tracking(self) -> TimeTracking:
        """The tenant's time-tracking settings; only called when a Jira duration string is read."""
        ...


# --------------------------------------------------------------------------------------------------
# Small helpers


def _describe(raw: Any) -> str:
    """A short name for the JSON kind of a raw value, for error messages (values are never echoed)."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, Decimal) and not raw.is_finite():
        return "NaN or an infinity"
    if isinstance(raw, int | float | Decimal):
        return "a number"
    if isinstance(raw, str):
        return "a string"
    if isinstance(raw, list | tuple):
        return "an array"
    if isinstance(raw, dict):
        return "an object"
    return type(raw).__name__


def _is_int(raw: Any) -> TypeGuard[int]:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _is_number(raw: Any) -> bool:
    return isinstance(raw, int | float | Decimal) and not isinstance(raw, bool)


def _none_if_empty(text: str) -> str | None:
    return text or None


def _expected(path: str, what: str, raw: Any) -> ChangeError:
    return ChangeError(path, f"expected {what}, got {_describe(raw)}")


# --------------------------------------------------------------------------------------------------
# text, multiline_text


def _text(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if isinstance(raw, str):
        return _none_if_empty(raw)
    raise _expected(path, "a string", raw)


def _is_empty_adf(doc: dict) -> bool:
    return doc.get("type") == "doc" and doc.get("content") == []


_encode_string = json.encoder.py_encode_basestring


def _dump_with_decimals(raw: Any, out: list[str], path: str) -> None:
    """Compact JSON of a parsed document whose numbers may be ``Decimal``s (written exactly, never as floats)."""
    if isinstance(raw, str):
        out.append(_encode_string(raw))
    elif isinstance(raw, dict):
        out.append("{")
        for position, (key, value) in enumerate(raw.items()):
            if position:
                out.append(",")
            out.append(_encode_string(str(key)))
            out.append(":")
            _dump_with_decimals(value, out, path)
        out.append("}")
    elif isinstance(raw, list):
        out.append("[")
        for position, value in enumerate(raw):
            if position:
                out.append(",")
            _dump_with_decimals(value, out, path)
        out.append("]")
    elif isinstance(raw, Decimal):
        if not raw.is_finite():
            raise ChangeError(path, "the ADF object contains NaN or an infinity")
        out.append(str(raw))  # a JSON number: digits, optional fraction, optional E exponent
    else:  # None, booleans, integers (floats are not produced by the request's parser)
        out.append(json.dumps(raw, allow_nan=False))


def _multiline_text(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if isinstance(raw, str):
        return _none_if_empty(raw)
    if isinstance(raw, dict):
        if _is_empty_adf(raw):
            return None
        try:
            try:
                return json.dumps(raw, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            except TypeError:  # a Decimal (a number with a fraction or exponent): the exact, slower way
                out: list[str] = []
                _dump_with_decimals(raw, out, path)
                return "".join(out)
        except (TypeError, ValueError, RecursionError) as exc:
            if isinstance(exc, ChangeError):
                raise
            raise ChangeError(path, "the ADF object cannot be written as JSON") from exc
    raise _expected(path, "a string or an ADF object", raw)


# --------------------------------------------------------------------------------------------------
# number

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _decimal_of(raw: Any, path: str) -> Decimal:
    """The exact decimal a JSON number or JSON-number string denotes."""
    if _is_int(raw):
        if raw.bit_length() > 4 * MAX_NUMBER_CHARS:
            raise ChangeError(path, "the number is too long")
        return Decimal(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ChangeError(path, "NaN and infinities are not numbers")
        return Decimal(repr(raw))
    if isinstance(raw, Decimal):
        if not raw.is_finite():
            raise ChangeError(path, "NaN and infinities are not numbers")
        return raw
    if isinstance(raw, str):
        if not _JSON_NUMBER.fullmatch(raw):
            raise ChangeError(path, "expected a number (JSON number grammar)")
        return Decimal(raw)
    raise _expected(path, "a number or a numeric string", raw)


def plain_decimal(value: Decimal, path: str = "value") -> str:
    """The shortest plain decimal of a finite ``Decimal``: no exponent, no trailing zeros, ``-0`` -> ``0``.

    Works on the digit string so no context precision or rounding ever applies, in time linear in the digits
    (trailing zeros go in one ``rstrip``, not one at a time, which made ``1`` and 100,000 zeros cost seconds).
    """
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)) or "0"
    stripped = digits.rstrip("0")
    if not stripped:
        return "0"
    exponent += len(digits) - len(stripped)
    digits = stripped
    length = len(digits) + exponent if exponent >= 0 else max(len(digits), -exponent) + 2
    if length > MAX_NUMBER_CHARS:
        raise ChangeError(path, "the number is too long")
    text = digits
    if exponent >= 0:
        text += "0" * exponent
    else:
        text = text.rjust(-exponent + 1, "0")
        text = f"{text[:exponent]}.{text[exponent:]}"
    return f"-{text}" if sign else text


def _number(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if raw == "":
        return None
    return plain_decimal(_decimal_of(raw, path), path)


# --------------------------------------------------------------------------------------------------
# date

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATE_TIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]"
    r"(?P<h>[0-9]{2}):(?P<m>[0-9]{2})(?::(?P<s>[0-9]{2})(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+-](?P<oh>[0-9]{2})(?::?(?P<om>[0-9]{2}))?)?"
)
_EPOCH = datetime(1970, 1, 1)
_MAX_EPOCH_MS = Decimal(10**15)


def _calendar_date(text: str, path: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise ChangeError(path, "not a valid calendar date") from exc


def _check_time(match: re.Match[str], path: str) -> None:
    limits = {"h": 23, "m": 59, "s": 60, "oh": 23, "om": 59}
    for group, limit in limits.items():
        part = match.group(group)
        if part is not None and int(part) > limit:
            raise ChangeError(path, "not a valid time of day or offset")


def _date_from_epoch_ms(raw: int | float | Decimal, path: str) -> str:
    millis = _decimal_of(raw, path)
    if millis.copy_abs() >= _MAX_EPOCH_MS:  # not abs(): it rounds to the context, which overflows on 1e999999999
        raise ChangeError(path, "epoch milliseconds out of range")
    try:
        whole = int(millis.to_integral_value(ROUND_FLOOR))
        return (_EPOCH + timedelta(milliseconds=whole)).date().isoformat()
    except OverflowError as exc:
        raise ChangeError(path, "epoch milliseconds out of range") from exc


def _date(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if _is_number(raw):
        return _date_from_epoch_ms(raw, path)
    if not isinstance(raw, str):
        raise _expected(path, "a date (yyyy-mm-dd, ISO date-time or epoch ms)", raw)
    if raw == "":
        return None
    if _DATE.fullmatch(raw):
        return _calendar_date(raw, path)
    match = _DATE_TIME.fullmatch(raw)
    if match is None:
        raise ChangeError(path, "expected yyyy-mm-dd, an ISO date-time or epoch ms")
    _check_time(match, path)
    return _calendar_date(match.group("date"), path)


# --------------------------------------------------------------------------------------------------
# duration

_DURATION = re.compile(r"\s*(?:[0-9]{1,15}(?:\.[0-9]{1,9})?\s*[wdhmsWDHMS]\s*)+")
"""A whole Jira duration; unambiguous (each part starts with a digit and ends with its unit, then spaces), so
matching it is linear in its length even when it fails."""
_DURATION_PART = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*([wdhmsWDHMS])")
_MS_PER = {"h": Decimal(3_600_000), "m": Decimal(60_000), "s": Decimal(1_000)}


def _unit_ms(unit: str, ctx: ValueContext) -> Decimal:
    if unit in _MS_PER:
        return _MS_PER[unit]
    settings = ctx.time_tracking()
    day = Decimal(repr(float(settings.hours_per_day))) * _MS_PER["h"]
    return day if unit == "d" else day * Decimal(repr(float(settings.days_per_week)))


def _jira_duration_ms(text: str, ctx: ValueContext, path: str) -> str:
    # Jira writes one part per unit; the bound keeps a long hostile string (read twice: validated, then
    # converted) to two linear scans in C instead of a Python step per part.
    if sum(map(text.lower().count, "wdhms")) > MAX_DURATION_PARTS:
        raise ChangeError(path, f"a Jira duration has at most {MAX_DURATION_PARTS} parts")
    if not _DURATION.fullmatch(text):
        raise ChangeError(path, "expected milliseconds or a Jira duration such as '2w 3d 4h 30m'")
    # The amounts are summed per unit first, then each sum is converted once: a long duration costs one regex
    # scan and one addition per part (a part-by-part conversion, asking the settings each time, cost seconds).
    with localcontext() as decimal_context:
        decimal_context.prec = 100
        per_unit: dict[str, Decimal] = {}
        for amount, unit in _DURATION_PART.findall(text):
            unit = unit.lower()
            per_unit[unit] = per_unit.get(unit, Decimal(0)) + Decimal(amount)
        total = sum((amount * _unit_ms(unit, ctx) for unit, amount in per_unit.items()), Decimal(0))
        return str(int(total.to_integral_value(ROUND_HALF_UP)))


def _integral_ms(raw: Any, path: str) -> str:
    value = _decimal_of(raw, path)
    if value != value.to_integral_value():
        raise ChangeError(path, "milliseconds must be a whole number")
    if value < 0:
        raise ChangeError(path, "a duration cannot be negative")
    return plain_decimal(value, path)


def _duration(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if _is_number(raw):
        return _integral_ms(raw, path)
    if not isinstance(raw, str):
        raise _expected(path, "milliseconds or a Jira duration", raw)
    if raw.strip() == "":
        return None
    if _JSON_NUMBER.fullmatch(raw):
        return _integral_ms(raw, path)
    return _jira_duration_ms(raw, ctx, path)


# --------------------------------------------------------------------------------------------------
# priority, status, list, user


def _option(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if isinstance(raw, str):
        return _none_if_empty(raw)
    if not isinstance(raw, dict):
        raise _expected(path, "a string or an object with a name", raw)
    for key in ("name", "value", "text"):
        if raw.get(key) is not None:
            if not isinstance(raw[key], str):
                raise _expected(f"{path}.{key}", "a string", raw[key])
            return _none_if_empty(raw[key])
    raise ChangeError(path, "expected an object with name, value or text")


def _user(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if isinstance(raw, str):
        return _none_if_empty(raw)
    if not isinstance(raw, dict):
        raise _expected(path, "an accountId or an object with accountId", raw)
    if "accountId" not in raw:
        raise ChangeError(f"{path}.accountId", "required")
    account_id = raw["accountId"]
    if account_id is None:
        return None
    if not isinstance(account_id, str):
        raise _expected(f"{path}.accountId", "a string", account_id)
    return _none_if_empty(account_id)


# --------------------------------------------------------------------------------------------------
# project

_PROJECT_ID = re.compile(r"[0-9]{1,19}")
_PROJECT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}")


def _project_id(raw: Any, path: str) -> str:
    if _is_int(raw) and 0 < raw <= _MAX_FIELD_ID:
        return str(raw)
    if isinstance(raw, str) and _PROJECT_ID.fullmatch(raw) and 0 < int(raw) <= _MAX_FIELD_ID:
        return str(int(raw))
    raise ChangeError(path, "expected a positive project id")


def _project_by_key(raw: Any, ctx: ValueContext, path: str) -> str:
    if not isinstance(raw, str) or not _PROJECT_KEY.fullmatch(raw):
        raise ChangeError(path, "expected a project key")
    try:
        return str(ctx.project_id_for_key(raw))
    except UnknownProjectKey:
        raise ChangeError(path, f"no project has the key {raw!r}") from None


def _project(raw: Any, ctx: ValueContext, path: str) -> str | None:
    if _is_int(raw):
        return _project_id(raw, path)
    if isinstance(raw, str):
        if raw == "":
            return None
        if raw.isascii() and raw.isdigit():
            return _project_id(raw, path)
        return _project_by_key(raw, ctx, path)
    if isinstance(raw, dict):
        if raw.get("id") is not None:
            return _project_id(raw["id"], f"{path}.id")
        if raw.get("key") is not None:
            return _project_by_key(raw["key"], ctx, f"{path}.key")
        raise ChangeError(path, "expected an object with id or key")
    raise _expected(path, "a project id, key or object", raw)


# --------------------------------------------------------------------------------------------------
# The type table

Normalizer = Callable[[Any, ValueContext, str], str | None]

SINGLE_TYPES: dict[str, Normalizer] = {
    "text": _text,
    "multiline_text": _multiline_text,
    "number": _number,
    "date": _date,
    "duration": _duration,
    "priority": _option,
    "status": _option,
    "list": _option,
    "user": _user,
    "project": _project,
}
MULTI_TYPES: dict[str, str] = {"multi_list": "list", "multi_user": "user", "multi_project": "project"}
"""Each multi-valued type and the single-valued type of its elements."""
FORMULA = "formula"
FIELD_TYPES: frozenset[str] = frozenset({*SINGLE_TYPES, *MULTI_TYPES, FORMULA})


def _multi(element_type: str, raw: Any, ctx: ValueContext, path: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _expected(path, "an array", raw)
    normalize = SINGLE_TYPES[element_type]
    values: list[str] = []
    for index, element in enumerate(raw):
        element_path = f"{path}[{index}]"
        value = None if element is None else normalize(element, ctx, element_path)
        if value is None:
            raise ChangeError(element_path, "an element of a list cannot be empty")
        values.append(value)
    return values


def normalize_value(field_type: str, raw: Any, ctx: ValueContext, path: str) -> Value:
    """The output form (CONTRACT §6.2) of a raw value of a field of ``field_type``.

    Raises ``ChangeError`` at ``path`` when the value does not fit the type; ``formula`` values and
    unknown types are errors here (``build_fields`` drops formula fields before normalising).
    """
    if field_type in SINGLE_TYPES:
        return None if raw is None else SINGLE_TYPES[field_type](raw, ctx, path)
    if field_type in MULTI_TYPES:
        return _multi(MULTI_TYPES[field_type], raw, ctx, path)
    raise ChangeError(path, f"values of type {field_type!r} are not normalised")


# --------------------------------------------------------------------------------------------------
# The changes array


@dataclass(frozen=True)
class _Change:
    index: int
    field_id: int
    name: str
    type: str
    previous: Any
    current: Any


class _DryRun:
    """A context for validating values without any outside call: keys resolve to a placeholder. `consulted`
    says whether a value needed the context (else the values it gave are final)."""

    def __init__(self) -> None:
        self.consulted = False

    def project_id_for_key(self, key: str) -> str:
        self.consulted = True
        return "0"

    def time_tracking(self) -> TimeTracking:
        self.consulted = True
        return TimeTracking()


class _Memo:
    """Asks the real context at most once per key (and once for time tracking) within one request."""

    def __init__(self, ctx: ValueContext) -> None:
        self._ctx = ctx
        self._ids: dict[str, str] = {}
        self._time_tracking: TimeTracking | None = None

    def project_id_for_key(self, key: str) -> str:
        if key not in self._ids:
            self._ids[key] = str(self._ctx.project_id_for_key(key))
        return self._ids[key]

    def time_tracking(self) -> TimeTracking:
        if self._time_tracking is None:
            self._time_tracking = self._ctx.time_tracking()
        return self._time_tracking


def _parse_field(raw: Any, path: str) -> tuple[int, str, str]:
    if not isinstance(raw, dict):
        raise _expected(path, "an object", raw)
    field_id, name, field_type = raw.get("id"), raw.get("name"), raw.get("type")
    if not _is_int(field_id):
        raise _expected(f"{path}.id", "an integer", field_id)
    if not -_MAX_FIELD_ID <= field_id <= _MAX_FIELD_ID:
        raise ChangeError(f"{path}.id", "out of range")
    if not isinstance(name, str) or not name:
        raise _expected(f"{path}.name", "a non-empty string", name)
    if not isinstance(field_type, str):
        raise _expected(f"{path}.type", "a string", field_type)
    if field_type not in FIELD_TYPES:
        raise ChangeError(f"{path}.type", f"unknown field type {field_type[:50]!r}")
    return field_id, name, field_type


def _parse_change(raw: Any, index: int) -> _Change:
    path = f"changes[{index}]"
    if not isinstance(raw, dict):
        raise _expected(path, "an object", raw)
    if "field" not in raw:
        raise ChangeError(f"{path}.field", "required")
    field_id, name, field_type = _parse_field(raw["field"], f"{path}.field")
    return _Change(index, field_id, name, field_type, raw.get("previous"), raw.get("current"))


def _values(change: _Change, ctx: ValueContext) -> tuple[Value, Value]:
    path = f"changes[{change.index}]"
    previous = normalize_value(change.type, change.previous, ctx, f"{path}.previous")
    current = normalize_value(change.type, change.current, ctx, f"{path}.current")
    return previous, current


def parse_changes(raw_changes: Any) -> list[Any]:
    """Checks the shape of the ``changes`` array itself (an array of at most ``MAX_CHANGES`` items)."""
    if not isinstance(raw_changes, list):
        raise _expected("changes", "an array", raw_changes)
    if len(raw_changes) > MAX_CHANGES:
        raise ChangeError("changes", f"at most {MAX_CHANGES} changes are allowed, got {len(raw_changes)}")
    return raw_changes


def field_entry(field_id: int, name: str, type_: str, previous: Any, current: Any) -> dict[str, Any]:
    """One item of the body's `fields` array (CONTRACT §6.1), for Projectrak fields and Jira attributes alike."""
    return {"id": field_id, "name": name, "type": type_, "value": {"current": current, "previous": previous}}


def build_fields(raw_changes: Any, ctx: ValueContext) -> list[dict[str, Any]]:
    """The outgoing ``fields`` (CONTRACT §6.1) of a Projectrak ``changes`` array, in input order.

    Formula fields and changes whose normalised values are equal are left out.  Every change is
    validated (structure and values) before ``ctx`` is asked anything, so a request that is going to
    be refused never costs a Jira call; each project key is then resolved once.
    """
    changes: list[tuple[_Change, tuple[Value, Value] | None]] = []
    dry_run = _DryRun()
    for index, raw in enumerate(parse_changes(raw_changes)):
        change = _parse_change(raw, index)
        if change.type != FORMULA:
            dry_run.consulted = False
            values = _values(change, dry_run)
            changes.append((change, None if dry_run.consulted else values))
    memo = _Memo(ctx)
    fields: list[dict[str, Any]] = []
    for change, final_values in changes:
        previous, current = final_values if final_values is not None else _values(change, memo)
        if previous != current:
            fields.append(field_entry(change.field_id, change.name, change.type, previous, current))
    return fields
