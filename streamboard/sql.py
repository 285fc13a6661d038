"""The Athena views as files: loading, ordering by dependency, and transpiling Trino SQL for DuckDB."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parent.parent / "athena_sql"
DEFAULT_HORIZON_DAYS = 30
_PARAM = re.compile(r"\$\{([a-z_]+)\}")


def render(sql: str, params: Mapping[str, object]) -> str:
    """Fill ``${name}`` placeholders; a placeholder without a value is an error, not a silent blank."""
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in params:
            raise KeyError(f"no value for ${{{m.group(1)}}} in the SQL")
        return str(params[m.group(1)])

    return _PARAM.sub(value, sql)


@dataclass(frozen=True)
class View:
    name: str
    sql: str  # Trino dialect, as in the file
    depends_on: frozenset[str]


def _references(sql: str) -> frozenset[str]:
    import sqlglot  # imported here: the deployed Lambdas read SQL files but never transpile
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="trino")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return frozenset(t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes)


@functools.cache
def load_views(sql_dir: Path = SQL_DIR, horizon_days: int = DEFAULT_HORIZON_DAYS) -> tuple[View, ...]:
    """Every ``<view>.sql`` in ``sql_dir``, ordered so that a view comes after the views it reads, with the
    dedupe horizon filled in."""
    views = {}
    for path in sorted(Path(sql_dir).glob("*.sql")):
        text = render(path.read_text(), {"dedupe_horizon_days": horizon_days})
        views[path.stem] = View(path.stem, text.strip().rstrip(";"), _references(text))
    ordered: list[View] = []
    done: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done or name not in views:
            return
        if name in stack:
            raise ValueError(f"views depend on each other in a cycle: {' -> '.join(stack + (name,))}")
        for dep in sorted(views[name].depends_on):
            visit(dep, stack + (name,))
        done.add(name)
        ordered.append(views[name])

    for name in views:
        visit(name, ())
    return tuple(ordered)


@functools.lru_cache(maxsize=512)
def to_duckdb(trino_sql: str) -> str:
    """Transpile one Trino statement to DuckDB (the local stand-in for Athena)."""
    import sqlglot

    trees = sqlglot.parse(trino_sql, read="trino")
    if len(trees) != 1 or trees[0] is None:
        raise ValueError("expected exactly one SQL statement")
    return str(trees[0].transform(_duckdb_function).sql(dialect="duckdb"))


def _duckdb_function(node: Any) -> Any:
    """Trino functions that DuckDB lacks and sqlglot leaves as they are, in DuckDB's words.

    ``from_big_endian_64(xxhash64(to_utf8(x)))``, a 64-bit hash of a string as a bigint (the refresh's key
    for event ids), becomes DuckDB's own 64-bit string hash shifted into bigint's range: another function,
    but a state is only ever compared with keys the same engine computed."""
    from sqlglot import exp

    if (isinstance(node, exp.Anonymous) and node.name.lower() == "from_big_endian_64"
            and len(node.expressions) == 1 and isinstance(inner := node.expressions[0], exp.Anonymous)
            and inner.name.lower() == "xxhash64" and len(inner.expressions) == 1
            and isinstance(encoded := inner.expressions[0], exp.Encode)):
        return exp.cast(exp.BitwiseRightShift(this=exp.func("hash", encoded.this.copy()),
                                              expression=exp.Literal.number(1)), "BIGINT")
    return node
