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
