"""Field types and value formats (CONTRACT §6.2) and the changes array (§5.1)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from addon.intake.fields import (
    FIELD_TYPES,
    MAX_CHANGES,
    ChangeError,
    TimeTracking,
    build_fields,
    normalize_value,
)


class FakeContext:
    """Resolves keys from a table and counts every call."""

    def __init__(self, projects: dict[str, str] | None = None, time_tracking: TimeTracking | None = None):
        self.projects = projects if projects is not None else {"DEMO": "13647", "OPS": "10001"}
        self._time_tracking = time_tracking or TimeTracking()
        self.key_calls: list[str] = []
        self.time_tracking_calls = 0

    def project_id_for_key(self, key: str) -> str:
        self.key_calls.append(key)
        if key not in self.projects:
            raise LookupError(key)
        return self.projects[key]

    def time_tracking(self) -> TimeTracking:
        self.time_tracking_calls += 1
        return self._time_tracking


ADF = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Hé"}]}]}

GOLDEN: list[tuple[str, Any, Any]] = [
    # text
    ("text", "Hello", "Hello"),
    ("text", "  padded  ", "  padded  "),
    ("text", "", None),
    ("text", None, None),
    # multiline_text
    ("multiline_text", "*bold* and _italic_\nline 2", "*bold* and _italic_\nline 2"),
    ("multiline_text", ADF, json.dumps(ADF, separators=(",", ":"), ensure_ascii=False)),
    ("multiline_text", {"type": "doc", "version": 1, "content": []}, None),
    ("multiline_text", "", None),
    ("multiline_text", None, None),
    # number
    ("number", 23000, "23000"),
    ("number", 23.5, "23.5"),
    ("number", "1.50", "1.5"),
    ("number", "23000", "23000"),
    ("number", 1e3, "1000"),
    ("number", "1e3", "1000"),
    ("number", "1.5E+2", "150"),
    ("number", "12345e-7", "0.0012345"),
    ("number", 1e-7, "0.0000001"),
    ("number", 0.1, "0.1"),
    ("number", -0.0, "0"),
    ("number", "-0", "0"),
    ("number", 0, "0"),
    ("number", "-12.3400", "-12.34"),
    ("number", 2**70, "1180591620717411303424"),
    ("number", "123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
    ("number", Decimal("2.50"), "2.5"),
    ("number", "", None),
    ("number", None, None),
    # date
    ("date", "2023-01-31", "2023-01-31"),
    ("date", "2023-01-31T23:30:00-05:00", "2023-01-31"),
    ("date", "2023-01-31T00:30:00+02:00", "2023-01-31"),
    ("date", "2023-01-31T17:21:57.615+0000", "2023-01-31"),
    ("date", "2023-01-31T17:21:57Z", "2023-01-31"),
    ("date", "2023-01-31 17:21", "2023-01-31"),
    ("date", 1675182117615, "2023-01-31"),
    ("date", 1675209599999, "2023-01-31"),
    ("date", 1675209600000, "2023-02-01"),
    ("date", 0, "1970-01-01"),
    ("date", -1, "1969-12-31"),
    ("date", 1675182117615.9, "2023-01-31"),
    ("date", "", None),
    ("date", None, None),
    # duration (8 h days, 5-day weeks)
    ("duration", 390600000, "390600000"),
    ("duration", "390600000", "390600000"),
    ("duration", 1.5e3, "1500"),
    ("duration", 0, "0"),
    ("duration", "2w 3d 4h 30m", "390600000"),
    ("duration", "2w3d4h30m", "390600000"),
    ("duration", "4H 30M", "16200000"),
    ("duration", "1.5h", "5400000"),
    ("duration", "45s", "45000"),
    ("duration", "1d", "28800000"),
    ("duration", "1w", "144000000"),
    ("duration", "", None),
    ("duration", None, None),
    # priority, status, list
    ("priority", "High", "High"),
    ("priority", {"name": "High", "id": "2"}, "High"),
    ("status", {"name": "Done"}, "Done"),
    ("status", {"value": "On track"}, "On track"),
    ("status", {"text": "At risk"}, "At risk"),
    ("list", {"name": None, "value": "Option A", "text": "ignored"}, "Option A"),
    ("list", {"id": 7, "text": "Red"}, "Red"),
    ("list", "", None),
    ("list", None, None),
    # multi_list
    ("multi_list", ["B", {"name": "A"}, {"value": "C"}], ["B", "A", "C"]),
    ("multi_list", [], []),
    ("multi_list", None, []),
    # user, multi_user
    ("user", "5b10ac8d82e05b22cc7d4ef5", "5b10ac8d82e05b22cc7d4ef5"),
    ("user", {"accountId": "557058:f58131cb", "displayName": "Ann"}, "557058:f58131cb"),
    ("user", {"accountId": None}, None),
    ("user", "", None),
    ("user", None, None),
    ("multi_user", ["a1", {"accountId": "a2"}], ["a1", "a2"]),
    ("multi_user", None, []),
    # project, multi_project
    ("project", 13647, "13647"),
    ("project", "13647", "13647"),
    ("project", "013647", "13647"),
    ("project", "DEMO", "13647"),
    ("project", {"id": 10001}, "10001"),
    ("project", {"id": "10001", "key": "DEMO"}, "10001"),
    ("project", {"key": "DEMO"}, "13647"),
    ("project", "", None),
    ("project", None, None),
    ("multi_project", [13647, "OPS", {"id": "5"}, {"key": "DEMO"}], ["13647", "10001", "5", "13647"]),
    ("multi_project", [], []),
    ("multi_project", None, []),
]


@pytest.mark.parametrize(("field_type", "raw", "expected"), GOLDEN)
def test_golden(field_type: str, raw: Any, expected: Any) -> None:
    assert normalize_value(field_type, raw, FakeContext(), "changes[0].current") == expected


ERRORS: list[tuple[str, Any, str]] = [
    ("text", 5, "changes[0].current"),
    ("text", ["a"], "changes[0].current"),
    ("multiline_text", ["a"], "changes[0].current"),
    ("multiline_text", {"bad": float("nan")}, "changes[0].current"),
    ("number", True, "changes[0].current"),
    ("number", False, "changes[0].current"),
    ("number", "NaN", "changes[0].current"),
    ("number", "Infinity", "changes[0].current"),
    ("number", "-Infinity", "changes[0].current"),
    ("number", float("nan"), "changes[0].current"),
    ("number", float("inf"), "changes[0].current"),
    ("number", Decimal("NaN"), "changes[0].current"),
    ("number", "23.000,00", "changes[0].current"),
    ("number", "1,5", "changes[0].current"),
    ("number", " 1", "changes[0].current"),
    ("number", "+1", "changes[0].current"),
    ("number", "01", "changes[0].current"),
    ("number", "1.", "changes[0].current"),
    ("number", ".5", "changes[0].current"),
    ("number", "0x10", "changes[0].current"),
    ("number", "1e999999999", "changes[0].current"),
    ("number", {"value": 1}, "changes[0].current"),
    ("date", "31/01/2023", "changes[0].current"),
    ("date", "2023-02-30", "changes[0].current"),
    ("date", "2023-01-31T25:00", "changes[0].current"),
    ("date", "2023-01-31T10:00+25:00", "changes[0].current"),
    ("date", "1675182117615", "changes[0].current"),
    ("date", True, "changes[0].current"),
    ("date", float("inf"), "changes[0].current"),
    ("date", 10**20, "changes[0].current"),
    ("duration", -1, "changes[0].current"),
    ("duration", 1.5, "changes[0].current"),
    ("duration", "1.5", "changes[0].current"),
    ("duration", True, "changes[0].current"),
    ("duration", "2x", "changes[0].current"),
    ("duration", "2w 3", "changes[0].current"),
    ("duration", "h", "changes[0].current"),
    ("duration", {"ms": 5}, "changes[0].current"),
    ("status", 3, "changes[0].current"),
    ("status", {}, "changes[0].current"),
    ("status", {"name": 3}, "changes[0].current.name"),
    ("multi_list", "A", "changes[0].current"),
    ("multi_list", ["A", None], "changes[0].current[1]"),
    ("multi_list", ["A", ""], "changes[0].current[1]"),
    ("multi_list", ["A", {"name": 1}], "changes[0].current[1].name"),
    ("user", 12, "changes[0].current"),
    ("user", {"name": "ann"}, "changes[0].current.accountId"),
    ("user", {"accountId": 5}, "changes[0].current.accountId"),
    ("multi_user", [{"accountId": "a"}, 5], "changes[0].current[1]"),
    ("project", 0, "changes[0].current"),
    ("project", -5, "changes[0].current"),
    ("project", 1.0, "changes[0].current"),
    ("project", True, "changes[0].current"),
    ("project", "DEMO-1", "changes[0].current"),
    ("project", {"id": "x"}, "changes[0].current.id"),
    ("project", {"key": 5}, "changes[0].current.key"),
    ("project", {"name": "Demo"}, "changes[0].current"),
    ("multi_project", ["DEMO", [1]], "changes[0].current[1]"),
    ("formula", 5, "changes[0].current"),
    ("nonsense", 5, "changes[0].current"),
]


@pytest.mark.parametrize(("field_type", "raw", "path"), ERRORS)
def test_value_errors(field_type: str, raw: Any, path: str) -> None:
    ctx = FakeContext()
    with pytest.raises(ChangeError) as caught:
        normalize_value(field_type, raw, ctx, "changes[0].current")
    assert caught.value.path == path
    assert str(caught.value) == f"{path}: {caught.value.message}"
    assert isinstance(caught.value, ValueError)


def test_duration_uses_custom_time_tracking_lazily() -> None:
    ctx = FakeContext(time_tracking=TimeTracking(hours_per_day=7, days_per_week=4))
    assert normalize_value("duration", "3600000", ctx, "p") == "3600000"
    assert normalize_value("duration", "4h 30m", ctx, "p") == "16200000"
    assert ctx.time_tracking_calls == 0
    assert normalize_value("duration", "1w 1d", ctx, "p") == str((28 + 7) * 3_600_000)
    assert normalize_value("duration", "2w 3d 4h 30m", ctx, "p") == "293400000"  # (56 + 21 + 4.5) h


def test_duration_fractional_day_rounds_to_whole_ms() -> None:
    ctx = FakeContext(time_tracking=TimeTracking(hours_per_day=7.5, days_per_week=5))
    assert normalize_value("duration", "1d", ctx, "p") == "27000000"
    assert normalize_value("duration", "0.0000001s", ctx, "p") == "0"
    assert normalize_value("duration", "0.0005s", ctx, "p") == "1"


def test_project_key_not_found_propagates() -> None:
    with pytest.raises(LookupError):
        normalize_value("project", "NOPE", FakeContext(), "changes[0].current")


# --------------------------------------------------------------------------------------------------
# build_fields


def change(field_id: int, name: str, field_type: str, previous: Any, current: Any) -> dict[str, Any]:
    return {"field": {"id": field_id, "name": name, "type": field_type}, "previous": previous, "current": current}


def test_contract_example() -> None:
    changes = [
        change(12345, "Budget", "number", 25000, 23000),
        change(54321, "Status", "status", {"name": "On track"}, {"name": "Done"}),
    ]
    fields = build_fields(changes, FakeContext())
    assert fields == [
        {"id": 12345, "name": "Budget", "type": "number", "value": {"current": "23000", "previous": "25000"}},
        {"id": 54321, "name": "Status", "type": "status", "value": {"current": "Done", "previous": "On track"}},
    ]
    assert [list(f) for f in fields] == [["id", "name", "type", "value"]] * 2
    assert [list(f["value"]) for f in fields] == [["current", "previous"]] * 2


def test_formula_dropped_without_looking_at_values() -> None:
    changes = [
        change(1, "Total", "formula", {"anything": [1, 2]}, float("nan")),
        change(2, "Name", "text", "a", "b"),
    ]
    assert [f["id"] for f in build_fields(changes, FakeContext())] == [2]
    assert build_fields([change(1, "Total", "formula", 1, 2)], FakeContext()) == []


@pytest.mark.parametrize(
    ("field_type", "previous", "current"),
    [
        ("number", "1.50", 1.5),
        ("number", 1000, "1e3"),
        ("text", "", None),
        ("date", "2023-01-31", "2023-01-31T08:00:00+05:00"),
        ("duration", "1h", 3600000),
        ("status", "Done", {"name": "Done"}),
        ("multi_list", ["A", "B"], [{"name": "A"}, "B"]),
        ("multi_user", None, []),
        ("project", "DEMO", 13647),
    ],
)
def test_unchanged_dropped(field_type: str, previous: Any, current: Any) -> None:
    assert build_fields([change(1, "F", field_type, previous, current)], FakeContext()) == []


def test_lists_compared_in_order() -> None:
    fields = build_fields([change(1, "Tags", "multi_list", ["A", "B"], ["B", "A"])], FakeContext())
    assert fields[0]["value"] == {"current": ["B", "A"], "previous": ["A", "B"]}


def test_missing_previous_and_current_are_null() -> None:
    fields = build_fields(
        [
            {"field": {"id": 1, "name": "T", "type": "text"}, "current": "x"},
            {"field": {"id": 2, "name": "L", "type": "multi_user"}, "previous": ["a"]},
            {"field": {"id": 3, "name": "N", "type": "number"}},
        ],
        FakeContext(),
    )
    assert [f["value"] for f in fields] == [
        {"current": "x", "previous": None},
        {"current": [], "previous": ["a"]},
    ]


def test_order_kept_and_ids_are_numbers() -> None:
    changes = [change(i, f"F{i}", "text", None, str(i)) for i in (30, -2, 10)]
    assert [f["id"] for f in build_fields(changes, FakeContext())] == [30, -2, 10]


def test_500_changes_allowed_501_refused() -> None:
    many = [change(i, "F", "text", None, "x") for i in range(MAX_CHANGES)]
    assert len(build_fields(many, FakeContext())) == 500
    with pytest.raises(ChangeError) as caught:
        build_fields([*many, change(0, "F", "text", None, "x")], FakeContext())
    assert caught.value.path == "changes"


def test_empty_changes() -> None:
    assert build_fields([], FakeContext()) == []


STRUCTURE_ERRORS: list[tuple[Any, str]] = [
    (None, "changes"),
    ({"0": {}}, "changes"),
    ("changes", "changes"),
    ([5], "changes[0]"),
    ([{}], "changes[0].field"),
    ([{"field": None}], "changes[0].field"),
    ([{"field": []}], "changes[0].field"),
    ([{"field": {"name": "F", "type": "text"}}], "changes[0].field.id"),
    ([{"field": {"id": True, "name": "F", "type": "text"}}], "changes[0].field.id"),
    ([{"field": {"id": 1.0, "name": "F", "type": "text"}}], "changes[0].field.id"),
    ([{"field": {"id": "1", "name": "F", "type": "text"}}], "changes[0].field.id"),
    ([{"field": {"id": 2**63, "name": "F", "type": "text"}}], "changes[0].field.id"),
    ([{"field": {"id": 1, "type": "text"}}], "changes[0].field.name"),
    ([{"field": {"id": 1, "name": "", "type": "text"}}], "changes[0].field.name"),
    ([{"field": {"id": 1, "name": 7, "type": "text"}}], "changes[0].field.name"),
    ([{"field": {"id": 1, "name": "F"}}], "changes[0].field.type"),
    ([{"field": {"id": 1, "name": "F", "type": 3}}], "changes[0].field.type"),
    ([{"field": {"id": 1, "name": "F", "type": "checkbox"}}], "changes[0].field.type"),
    ([{"field": {"id": 1, "name": "F", "type": "Text"}}], "changes[0].field.type"),
    ([change(1, "F", "text", None, "x"), change(2, "G", "number", "abc", 1)], "changes[1].previous"),
    ([change(1, "F", "text", None, "x"), change(2, "G", "number", 1, True)], "changes[1].current"),
]


@pytest.mark.parametrize(("changes", "path"), STRUCTURE_ERRORS)
def test_structure_errors(changes: Any, path: str) -> None:
    with pytest.raises(ChangeError) as caught:
        build_fields(changes, FakeContext())
    assert caught.value.path == path


def test_unknown_type_at_index() -> None:
    changes = [change(i, "F", "text", None, "x") for i in range(3)] + [change(9, "F", "rating", 1, 2)]
    with pytest.raises(ChangeError) as caught:
        build_fields(changes, FakeContext())
    assert caught.value.path == "changes[3].field.type"
    assert str(caught.value).startswith("changes[3].field.type: ")


def test_no_context_call_before_everything_is_valid() -> None:
    ctx = FakeContext()
    changes = [
        change(1, "P", "project", "DEMO", "OPS"),
        change(2, "D", "duration", "1d", "2d"),
        change(3, "X", "bogus", None, None),
    ]
    with pytest.raises(ChangeError):
        build_fields(changes, ctx)
    assert ctx.key_calls == [] and ctx.time_tracking_calls == 0

    changes[2] = change(3, "N", "number", None, "1,5")
    with pytest.raises(ChangeError) as caught:
        build_fields(changes, ctx)
    assert caught.value.path == "changes[2].current"
    assert ctx.key_calls == [] and ctx.time_tracking_calls == 0


def test_each_key_resolved_once_and_time_tracking_once() -> None:
    ctx = FakeContext(time_tracking=TimeTracking(hours_per_day=7))
    changes = [
        change(1, "P", "project", "DEMO", "OPS"),
        change(2, "R", "multi_project", ["DEMO", {"key": "OPS"}], ["OPS", 13647]),
        change(3, "E", "duration", "1d", "2d"),
        change(4, "F", "duration", "1w", None),
    ]
    fields = build_fields(changes, ctx)
    assert sorted(ctx.key_calls) == ["DEMO", "OPS"]
    assert ctx.time_tracking_calls == 1
    assert [f["value"] for f in fields] == [
        {"current": "10001", "previous": "13647"},
        {"current": ["10001", "13647"], "previous": ["13647", "10001"]},
        {"current": str(14 * 3_600_000), "previous": str(7 * 3_600_000)},
        {"current": None, "previous": str(35 * 3_600_000)},
    ]


def test_context_errors_propagate() -> None:
    with pytest.raises(LookupError):
        build_fields([change(1, "P", "project", None, "GONE")], FakeContext())


def test_field_types_table() -> None:
    assert FIELD_TYPES == {
        "text", "multiline_text", "number", "date", "duration", "priority", "status", "list",
        "multi_list", "user", "multi_user", "project", "multi_project", "formula",
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Properties

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_like = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
type_names = st.sampled_from(sorted(FIELD_TYPES)) | st.text(max_size=10)
value_like = (
    json_like
    | st.sampled_from(["", "DEMO", "2w 3d", "2023-01-31", "2023-01-31T10:00Z", "1.50", "1e3", "-0", "NaN"])
    | st.lists(st.sampled_from(["A", "DEMO", "12", {"name": "x"}, {"accountId": "a"}, {"key": "OPS"}]), max_size=3)
)
field_like = st.fixed_dictionaries(
    {"id": st.integers() | json_scalars, "name": st.text(max_size=5) | json_scalars, "type": type_names}
)
change_like = st.fixed_dictionaries({"field": field_like | json_like, "previous": value_like, "current": value_like})
changes_like = st.lists(change_like, max_size=6) | json_like


class FixedContext:
    def project_id_for_key(self, key: str) -> str:
        return "10000"

    def time_tracking(self) -> TimeTracking:
        return TimeTracking()


@settings(max_examples=500, deadline=None)
@given(changes_like)
def test_build_fields_only_returns_a_list_or_raises_change_error(raw: Any) -> None:
    try:
        fields = build_fields(raw, FixedContext())
    except ChangeError as error:
        assert error.path.startswith("changes")
        return
    assert isinstance(fields, list)
    for field in fields:
        assert list(field) == ["id", "name", "type", "value"]
        assert field["type"] != "formula"
        current, previous = field["value"]["current"], field["value"]["previous"]
        assert current != previous
        for value in (current, previous):
            assert value is None or isinstance(value, str) or all(isinstance(v, str) for v in value)
        json.dumps(field, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None)
)
def test_number_output_is_a_fixed_point_and_equal_in_value(raw: Any) -> None:
    try:
        text = normalize_value("number", raw, FixedContext(), "p")
    except ChangeError as error:
        assert error.message == "the number is too long"
        return
    assert isinstance(text, str)
    assert "e" not in text.lower()
    assert Decimal(text) == Decimal(repr(raw) if isinstance(raw, float) else raw)
    assert normalize_value("number", text, FixedContext(), "p") == text
    if "." in text:
        assert not text.endswith("0")


# Hostile sizes: refused (or read) at a cost linear in their length. Before, trailing zeros were stripped one per
# loop with a tuple copy (a 1 and a million zeros: about twenty minutes) and `abs()` of `1e999999999` raised
# decimal.Overflow (a 500). The timeout is a guard against a quadratic comeback, far above the linear cost.
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("field_type", "raw", "expected"), [
    ("number", "1" + "0" * 1_000_000, "the number is too long"),
    ("number", Decimal("1" + "0" * 1_000_000), "the number is too long"),
    ("number", Decimal("1." + "0" * 1_000_000), "1"),
    ("number", Decimal("-5" + "0" * 500_000 + "e-500000"), "-5"),
    ("number", Decimal("1e999999999"), "the number is too long"),
    ("number", Decimal("1e-999999999"), "the number is too long"),
    ("duration", "1" + "0" * 1_000_000, "the number is too long"),
    ("duration", Decimal("1" + "0" * 1_000_000), "the number is too long"),
    ("duration", Decimal("1e999999999"), "the number is too long"),
    ("duration", Decimal("1e-999999999"), "milliseconds must be a whole number"),
    ("duration", "1d" * 450_000, "a Jira duration has at most 20 parts"),
    ("duration", "1.5h " * 200_000, "a Jira duration has at most 20 parts"),
    ("duration", "1d " * 20, "576000000"),
    ("date", Decimal("1e999999999"), "epoch milliseconds out of range"),
    ("date", Decimal("-1e999999999"), "epoch milliseconds out of range"),
    ("date", Decimal("1e-999999999"), "1970-01-01"),
    ("date", Decimal("1" + "0" * 1_000_000), "epoch milliseconds out of range"),
    ("project", "1" + "0" * 1_000_000, "expected a positive project id"),
])
def test_huge_and_long_numbers(field_type: str, raw: Any, expected: str) -> None:
    try:
        value = normalize_value(field_type, raw, FakeContext(), "changes[0].current")
    except ChangeError as exc:
        assert (exc.path, exc.message) == ("changes[0].current", expected)
    else:
        assert value == expected
