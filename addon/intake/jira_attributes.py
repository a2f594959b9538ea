"""Jira project attributes as fields with negative ids (CONTRACT §5.2).

A project's attributes are kept as a snapshot ``dict[int, str | None]`` (attribute id -> output value).
All values are single strings or ``None``; an empty string counts as ``None``.

Decisions where CONTRACT §5.2 is silent:

* Reading Jira's JSON never raises: a value of the wrong JSON type (e.g. a number where a string is
  expected, or a non-object ``lead``) is read as ``None`` for REST answers, and as "absent" for
  webhook bodies (so the attribute is fetched from REST).
* A webhook body's ``assigneeType`` may be Jira's i18n key (``admin.assignee.type.unassigned`` /
  ``admin.assignee.type.project.lead``) or already ``UNASSIGNED`` / ``PROJECT_LEAD``; any other
  string is passed through unchanged.
* A webhook body's ``projectLead`` (or ``lead``) object without an ``accountId`` counts as absent;
  ``projectLead: null`` means "no lead".  ``projectCategory`` absent means "unknown" (fetched), since
  Jira's project webhooks usually leave it out; ``projectCategory: null`` means "no category".
* An attribute a REST answer leaves out is *unknown*, not ``null``: it is left out of the snapshot
  (``GET /rest/api/3/project/search``, which the install snapshot reads, may omit ``assigneeType``, which
  ``GET /rest/api/3/project/{id}`` has).  Except ``url`` and ``projectCategory``, which Jira leaves out
  when the project has none: their absence means ``null``.
* ``diff_attributes`` only compares attributes recorded on both sides: an attribute whose recorded value
  is unknown is just recorded, never reported as a ``null`` -> value change (likewise for a snapshot
  written before an attribute was tracked).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from addon.intake.fields import field_entry

Attributes = dict[int, str | None]


@dataclass(frozen=True)
class Attribute:
    id: int
    name: str
    type: str


KEY, NAME, TYPE, URL, LEAD, DEFAULT_ASSIGNEE, CATEGORY, DESCRIPTION = -1, -2, -3, -4, -5, -6, -7, -9

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(KEY, "Key", "text"),
    Attribute(NAME, "Name", "text"),
    Attribute(TYPE, "Type", "text"),
    Attribute(URL, "Url", "text"),
    Attribute(LEAD, "Lead", "user"),
    Attribute(DEFAULT_ASSIGNEE, "Default Assignee", "text"),
    Attribute(CATEGORY, "Category", "list"),
    Attribute(DESCRIPTION, "Description", "multiline_text"),
)
"""The attributes in output order."""

ATTRIBUTE_IDS: frozenset[int] = frozenset(attribute.id for attribute in ATTRIBUTES)

_WEBHOOK_ASSIGNEE_TYPES = {
    "admin.assignee.type.unassigned": "UNASSIGNED",
    "admin.assignee.type.project.lead": "PROJECT_LEAD",
}

_ABSENT = object()
"""Marks a webhook body's attribute that is not there (or not usable) and must be fetched."""


def _string(value: Any) -> str | None:
    """A Jira string as an output value: ``""`` and anything that is not a string are ``None``."""
    return value if isinstance(value, str) and value else None


def _nested(project: Mapping[str, Any], key: str, inner: str) -> Any:
    """``project[key][inner]``, ``None`` when ``project[key]`` is null, ``_ABSENT`` when unusable."""
    if key not in project:
        return _ABSENT
    outer = project[key]
    if outer is None:
        return None
    if not isinstance(outer, Mapping) or inner not in outer:
        return _ABSENT
    return outer[inner]


def _assignee_type(value: Any) -> str | None:
    text = _string(value)
    return _WEBHOOK_ASSIGNEE_TYPES.get(text, text) if text is not None else None


def _rest_nested(project: Mapping[str, Any], key: str, inner: str) -> Any:
    """``project[key][inner]``; ``_ABSENT`` only when ``key`` is not there (an odd shape reads as ``None``)."""
    value = _nested(project, key, inner)
    return None if value is _ABSENT and key in project else value


_ABSENT_MEANS_NONE = frozenset({URL, CATEGORY})
"""Attributes Jira's REST answers leave out when the project has none (the others: when not reported)."""


def attributes_from_rest(project: Mapping[str, Any]) -> Attributes:
    """The snapshot from a ``GET /rest/api/3/project/{id}`` (or project search) answer.

    An attribute the answer does not state is left out (unknown), except ``url`` and ``projectCategory``
    (``None`` when absent); see the module's notes.
    """
    raw = {
        KEY: project.get("key", _ABSENT),
        NAME: project.get("name", _ABSENT),
        TYPE: project.get("projectTypeKey", _ABSENT),
        URL: project.get("url", _ABSENT),
        LEAD: _rest_nested(project, "lead", "accountId"),
        DEFAULT_ASSIGNEE: project.get("assigneeType", _ABSENT),
        CATEGORY: _rest_nested(project, "projectCategory", "name"),
        DESCRIPTION: project.get("description", _ABSENT),
    }
    attributes: Attributes = {}
    for attribute_id, value in raw.items():
        if value is _ABSENT:
            if attribute_id in _ABSENT_MEANS_NONE:
                attributes[attribute_id] = None
            continue
        attributes[attribute_id] = _assignee_type(value) if attribute_id == DEFAULT_ASSIGNEE else _string(value)
    return attributes


def _webhook_lead(project: Mapping[str, Any]) -> Any:
    lead = _nested(project, "projectLead", "accountId")
    return _nested(project, "lead", "accountId") if lead is _ABSENT else lead


def _webhook_plain(project: Mapping[str, Any], key: str) -> Any:
    if key not in project:
        return _ABSENT
    value = project[key]
    return value if value is None or isinstance(value, str) else _ABSENT


def attributes_from_webhook(project: Mapping[str, Any]) -> Attributes:
    """The attributes a Jira project webhook body's ``project`` object states; absent ones are left out.

    Use ``missing_attributes`` to learn whether a REST fetch is needed, and ``fill_missing`` to merge it.
    """
    raw = {
        KEY: _webhook_plain(project, "key"),
        NAME: _webhook_plain(project, "name"),
        TYPE: _webhook_plain(project, "projectTypeKey"),
        URL: _webhook_plain(project, "url"),
        LEAD: _webhook_lead(project),
        DEFAULT_ASSIGNEE: _webhook_plain(project, "assigneeType"),
        CATEGORY: _nested(project, "projectCategory", "name"),
        DESCRIPTION: _webhook_plain(project, "description"),
    }
    attributes: Attributes = {}
    for attribute_id, value in raw.items():
        if value is _ABSENT or not (value is None or isinstance(value, str)):
            continue
        attributes[attribute_id] = _assignee_type(value) if attribute_id == DEFAULT_ASSIGNEE else _string(value)
    return attributes


def missing_attributes(attributes: Mapping[int, str | None]) -> set[int]:
    """The attribute ids a (partial) snapshot lacks; empty when it is complete."""
    return set(ATTRIBUTE_IDS - attributes.keys())


def fill_missing(partial: Mapping[int, str | None], full: Mapping[int, str | None]) -> Attributes:
    """``partial`` completed from ``full`` (e.g. a REST answer): what ``partial`` states wins."""
    merged: Attributes = {}
    for attribute in ATTRIBUTES:
        source = partial if attribute.id in partial else full
        if attribute.id in source:
            merged[attribute.id] = _string(source[attribute.id])
    return merged


def diff_attributes(old: Mapping[int, str | None], new: Mapping[int, str | None]) -> list[dict[str, Any]]:
    """Outgoing fields, in table order, for every attribute recorded on both sides whose value differs."""
    fields: list[dict[str, Any]] = []
    for attribute in ATTRIBUTES:
        if attribute.id not in old or attribute.id not in new:
            continue
        previous, current = _string(old[attribute.id]), _string(new[attribute.id])
        if previous != current:
            fields.append(field_entry(attribute.id, attribute.name, attribute.type, previous, current))
    return fields


def dump_snapshot(attributes: Mapping[int, str | None]) -> str:
    """A snapshot as JSON text (string keys, table order); unknown ids are left out."""
    ordered = {str(a.id): _string(attributes[a.id]) for a in ATTRIBUTES if a.id in attributes}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)


def load_snapshot(data: str | bytes | Mapping[str, Any]) -> Attributes:
    """A snapshot from ``dump_snapshot``'s JSON text (or the already-parsed object).

    Raises ``ValueError`` for anything that is not such a snapshot; unknown ids are ignored.
    """
    parsed = json.loads(data) if isinstance(data, str | bytes) else data
    if not isinstance(parsed, Mapping):
        raise ValueError("a snapshot must be a JSON object")
    attributes: Attributes = {}
    for key, value in parsed.items():
        try:
            attribute_id = int(key)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"snapshot key {key!r} is not an attribute id") from exc
        if value is not None and not isinstance(value, str):
            raise ValueError(f"snapshot value of {key!r} must be a string or null")
        if attribute_id in ATTRIBUTE_IDS:
            attributes[attribute_id] = _string(value)
    return {a.id: attributes[a.id] for a in ATTRIBUTES if a.id in attributes}
