"""``chatroute stats`` as a table: every row writes a column's numbers the same way."""

from __future__ import annotations

from chatroute.stats import columns, render_table


def group_row(group: str | None, commission: float, **figures: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(columns("group"), 0)
    row |= {"tenant": "shop-1", "group": group, "commission": commission}
    row |= {"satisfaction_avg": None, "first_response_avg_s": None}
    row |= {"wait_avg_s": None, "wait_p90_s": None}
    return row | figures


def cells(table: str, column: str) -> list[str]:
    lines = [line.split() for line in table.splitlines()]
    index = lines[0].index(column)
    return [line[index] for line in lines[1:]]


def test_commission_has_two_decimals_in_every_row_even_the_unrouted_one() -> None:
    # Given a group with sales and the row of conversations no rule matched, whose
    # commission is a plain 0
    rows = [
        group_row("Phones", 12.5, contacts=3, wait_avg_s=4.0, wait_p90_s=6.0),
        group_row("Laptops", 0.0, contacts=1, wait_avg_s=0.0, wait_p90_s=0.0),
        group_row(None, 0, conversations=2, unrouted=2),
    ]
    # When the table is rendered
    table = render_table(rows, "group")
    # Then each commission is written with two decimals; counts stay integers
    assert cells(table, "commission") == ["12.50", "0.00", "0.00"]
    assert cells(table, "contacts") == ["3", "1", "0"]
    assert cells(table, "wait_avg_s") == ["4.00", "0.00", "-"]


def test_a_whole_number_in_a_decimal_column_is_written_with_decimals() -> None:
    row = group_row("Phones", 3, satisfaction_avg=4, first_response_avg_s=60)
    table = render_table([row], "group")
    assert cells(table, "commission") == ["3.00"]
    assert cells(table, "satisfaction_avg") == ["4.00"]
    assert cells(table, "first_response_avg_s") == ["60.00"]


V1_RESPONDENT_COLUMNS = [
    "tenant",
    "respondent",
    "contacts",
    "answered",
    "unanswered",
    "transfers_out",
    "snoozes",
    "satisfaction_count",
    "satisfaction_avg",
    "commission",
    "first_response_avg_s",
]
V1_GROUP_COLUMNS = ["conversations", "queued", "wait_avg_s", "wait_p90_s", "unrouted"]
V2_GROUP_COLUMNS = [
    "overflowed_in",
    "overflowed_out",
    "unrouted_no_rule",
    "unrouted_closed",
    "unrouted_queue_full",
    "unrouted_wait_timeout",
]


def test_the_respondent_columns_are_the_contracts_v1_ones_exactly() -> None:
    assert list(columns("respondent")) == V1_RESPONDENT_COLUMNS


def test_group_and_day_keep_every_v1_column_in_order_and_append_the_v2_ones() -> None:
    contact_columns = V1_RESPONDENT_COLUMNS[2:]
    for by in ("group", "day"):
        assert list(columns(by)) == [
            "tenant",
            by,
            *contact_columns,
            *V1_GROUP_COLUMNS,
            *V2_GROUP_COLUMNS,
        ]


def test_the_v2_columns_are_integer_counts_in_the_table() -> None:
    row = group_row("A", 0.0, overflowed_out=2, unrouted=3, unrouted_closed=1)
    row |= {"unrouted_queue_full": 1, "unrouted_wait_timeout": 1}
    table = render_table([row], "group")
    assert table.splitlines()[0].split()[-6:] == V2_GROUP_COLUMNS
    assert cells(table, "overflowed_in") == ["0"]
    assert cells(table, "overflowed_out") == ["2"]
    assert [cells(table, f"unrouted_{code}")[0] for code in ("no_rule", "closed")] == ["0", "1"]


def test_a_respondent_table_renders_as_in_v1() -> None:
    row = {name: 0 for name in V1_RESPONDENT_COLUMNS} | {
        "tenant": "shop-1",
        "respondent": "a",
        "contacts": 2,
        "answered": 1,
        "unanswered": 1,
        "commission": 1.5,
        "satisfaction_avg": None,
        "first_response_avg_s": 30.0,
    }
    assert render_table([row]) == (
        "tenant  respondent  contacts  answered  unanswered  transfers_out  snoozes  "
        "satisfaction_count  satisfaction_avg  commission  first_response_avg_s\n"
        "shop-1  a           2         1         1           0              0        "
        "0                   -                 1.50        30.00"
    )
