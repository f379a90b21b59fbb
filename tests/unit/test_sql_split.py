"""A migration file split into statements, as a Citus cluster runs it (one at a time)."""

from __future__ import annotations

from geopush.store.migrations import available
from geopush.store.sql_split import statements


def test_semicolons_in_quotes_dollar_quotes_and_comments_end_nothing() -> None:
    sql = ("CREATE FUNCTION f() RETURNS int AS $x$ SELECT 1; $x$ LANGUAGE sql;\n"
           "-- a comment; still one\nSELECT 'a;''b', \"c;d\";\n/* ; */ SELECT $1;\n-- end\n")
    assert statements(sql) == [
        "CREATE FUNCTION f() RETURNS int AS $x$ SELECT 1; $x$ LANGUAGE sql;",
        "-- a comment; still one\nSELECT 'a;''b', \"c;d\";",
        "/* ; */ SELECT $1;",
    ]


def test_every_shipped_migration_splits_back_into_its_own_text() -> None:
    for m in available():
        parts = statements(m.sql)
        assert parts, m.name
        joined = "".join(parts)
        assert joined.replace(" ", "").replace("\n", "") in m.sql.replace(" ", "").replace(
            "\n", ""), m.name
