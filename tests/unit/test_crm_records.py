"""Customer and transaction rows are checked by their resource's model, field by field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from geopush.crm.customer_rows import customer_parser
from geopush.crm.customers import CustomerRecord
from geopush.crm.transaction_rows import transaction_parser
from geopush.crm.transactions import TransactionRecord
from geopush.fields import InvalidBody, check_body

TX = ("transaction_id", "customer_id", "store_external_id", "ts", "amount", "category",
      "line", "product")
CUSTOMER = ("customer_id", "first_name", "language", "created_at")


def tx_row(**values: str) -> list[str]:
    base = {"transaction_id": "T1", "customer_id": "C1", "store_external_id": "",
            "ts": "2025-03-01T10:00:00+01:00", "amount": "12.50", "category": "",
            "line": "", "product": ""}
    return [{**base, **values}[name] for name in TX]


def test_a_good_transaction_row_is_the_model_s_values() -> None:
    parse = transaction_parser({n: i for i, n in enumerate(TX)}, len(TX))
    assert parse(2, tx_row(line="3", category="coffee")) == (
        2, "T1", 3, "C1", None, datetime(2025, 3, 1, 9, tzinfo=UTC), "12.50", "coffee", None)


@pytest.mark.parametrize(("values", "field"), [
    ({"transaction_id": ""}, "transaction_id"),
    ({"customer_id": "x" * 201}, "customer_id"),
    ({"store_external_id": "s" * 201}, "store_external_id"),
    ({"ts": "2025-03-01T10:00:00"}, "ts"),
    ({"amount": "12,50"}, "amount"),
    ({"amount": "1e3"}, "amount"),
    ({"line": "0"}, "line"),
    ({"line": "two"}, "line"),
    ({"line": "+2"}, "line"),
    ({"product": "p" * 201}, "product"),
])
def test_a_bad_transaction_row_says_what_the_model_says(values: dict, field: str) -> None:
    parse = transaction_parser({n: i for i, n in enumerate(TX)}, len(TX))
    reason = parse(2, tx_row(**values))
    assert isinstance(reason, str) and reason.startswith(f"{field}: ")
    required = {"transaction_id", "customer_id", "ts", "amount"}
    body = {k: v for k, v in zip(TX, tx_row(**values), strict=True) if v or k in required}
    if body.get("line", "").isdigit():
        body["line"] = int(body["line"])
    with pytest.raises(InvalidBody) as refused:
        check_body(TransactionRecord, body)
    assert refused.value.message == reason


def test_times_and_amounts_are_quoted_in_the_reason() -> None:
    parse = transaction_parser({n: i for i, n in enumerate(TX)}, len(TX))
    assert parse(2, tx_row(ts="yesterday")) == (
        "ts: not an RFC 3339 time with a time zone offset (e.g. Z or +02:00): 'yesterday'")
    assert parse(2, tx_row(amount="n/a")) == "amount: not a decimal number: 'n/a'"


@pytest.mark.parametrize(("row", "expected"), [
    (["C1", "Ann", "fr-CA", "2024-03-01"],
     ("C1", "Ann", "fr-CA", datetime(2024, 3, 1, tzinfo=UTC))),
    (["C2", "", "", ""], ("C2", None, None, None)),
    (["C3", "Bo", "en", "2024-03-01T10:30:00+02:00"],
     ("C3", "Bo", "en", datetime(2024, 3, 1, 8, 30, tzinfo=UTC))),
    (["C4", "Dee", "not a language", ""], "language: not a language tag such as fr or fr-CA:"
                                          " 'not a language'"),
    (["C5", "Eve", "en", "2024-13-01"], "created_at: not a date or an RFC 3339 time:"
                                        " '2024-13-01'"),
    (["", "Fay", "en", ""], "customer_id: String should have at least 1 character"),
    (["C6", "x" * 501, "en", ""], "first_name: String should have at most 500 characters"),
])
def test_customer_rows_are_customer_records(row: list[str], expected: object) -> None:
    parse = customer_parser({n: i for i, n in enumerate(CUSTOMER)}, len(CUSTOMER))
    result = parse(2, row)
    if isinstance(expected, str):
        assert result == expected
        with pytest.raises(InvalidBody) as refused:
            check_body(CustomerRecord, {k: v for k, v in zip(CUSTOMER, row, strict=True)
                                        if v or k == "customer_id"})
        assert refused.value.message == expected
    else:
        assert result == (2, *expected, None)
