"""Split a migration file into its statements, for a Citus cluster (see migrations.py).

Semicolons end a statement only outside quotes ('…', "…"), dollar quotes ($$…$$,
$tag$…$tag$) and comments (-- …, /* … */); statements that are only comments or
whitespace are dropped.
"""

from __future__ import annotations

import re

_DOLLAR = re.compile(r"\$[A-Za-z_0-9]*\$")


def statements(sql: str) -> list[str]:
    out: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = sql.find(c, i + 1)
            while end != -1 and sql[end + 1:end + 2] == c:  # a doubled quote inside
                end = sql.find(c, end + 2)
            i = n if end == -1 else end + 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif c == "$" and (m := _DOLLAR.match(sql, i)) and not (
                i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            end = sql.find(m.group(), m.end())
            i = n if end == -1 else end + len(m.group())
        elif c == ";":
            out.append(sql[start:i + 1])
            start = i = i + 1
        else:
            i += 1
    out.append(sql[start:])
    return [s.strip() for s in out if _has_code(s)]


def _has_code(text: str) -> bool:
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return bool(text.strip(" \t\r\n;"))
