"""A transaction line as the CRM sends one (SPEC sections 7 and 12)."""

from __future__ import annotations

from typing import Annotated

from geopush.crm.csv_values import CrmId, Decimal, ShortText, ZonedTime
from geopush.fields import RequestBody, WholeIn

#: Lines of one transaction are numbered from 1; PostgreSQL `integer`, nine digits.
MAX_LINE = 999_999_999


class TransactionRecord(RequestBody):
    """One line of a transaction, the one check of one: each row of `POST
    /v1/transactions/import` is this model.

    A transaction is unique by (`transaction_id`, `line`); `store_external_id` may be absent
    or name a store geopush does not know (an online sale): it then counts for FRAT, not for
    conversions. Fields are in the order an import reports the first problem of a row.
    """

    transaction_id: CrmId
    customer_id: CrmId
    store_external_id: ShortText | None = None
    ts: ZonedTime
    amount: Decimal
    category: ShortText | None = None
    line: Annotated[int, WholeIn(1, MAX_LINE)] = 1
    product: ShortText | None = None
