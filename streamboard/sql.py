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


@functools.lru_cache(maxsize=512)
def parse_trino(sql: str) -> Any:
    """One Trino statement's syntax tree, parsed once for all its readers (transpiling it, and counting what
    it reads); callers never change it (``transform`` copies)."""
    import sqlglot  # imported here: the deployed Lambdas read SQL files but never transpile

    trees = sqlglot.parse(sql, read="trino")
    if len(trees) != 1 or trees[0] is None:
        raise ValueError("expected exactly one SQL statement")
    return trees[0]


@functools.lru_cache(maxsize=512)
def touches(sql: str) -> tuple[frozenset[str], frozenset[str], bool]:
    """The tables a statement reads (not its CTEs), the column names it mentions, and whether it selects
    ``*`` (``count(*)`` is not): what an engine reads of each table."""
    from sqlglot import exp

    tree = parse_trino(sql)
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    tables = frozenset(t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes)
    columns = frozenset(c.name for c in tree.find_all(exp.Column) if c.name)
    star = any(isinstance(s.parent, exp.Select | exp.Column) for s in tree.find_all(exp.Star))
    return tables, columns, star


@functools.cache
def load_views(sql_dir: Path = SQL_DIR, horizon_days: int = DEFAULT_HORIZON_DAYS) -> tuple[View, ...]:
    """Every ``<view>.sql`` in ``sql_dir``, ordered so that a view comes after the views it reads, with the
    dedupe horizon filled in."""
    views = {}
    for path in sorted(Path(sql_dir).glob("*.sql")):
        text = render(path.read_text(), {"dedupe_horizon_days": horizon_days})
        views[path.stem] = View(path.stem, text.strip().rstrip(";"), touches(text)[0])
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
    return str(parse_trino(trino_sql).transform(_duckdb_function).sql(dialect="duckdb"))


def _duckdb_function(node: Any) -> Any:
    """Trino functions that DuckDB lacks and sqlglot leaves as they are, in DuckDB's words.

    The refresh keys an event id by two 64-bit hashes of it as bigints: ``from_big_endian_64(xxhash64(
    to_utf8(x)))`` and ``from_big_endian_64(substr(md5(to_utf8(x)), 1, 8))``. They become DuckDB's own
    string hash of the id and of the id reversed, shifted into bigint's range: other values than Trino's,
    but a state is only ever compared with keys that the same engine computed."""
    from sqlglot import exp

    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "from_big_endian_64"
            and len(node.expressions) == 1):
        return node
    arg = node.expressions[0]
    if (isinstance(arg, exp.Anonymous) and arg.name.lower() == "xxhash64" and len(arg.expressions) == 1
            and isinstance(arg.expressions[0], exp.Encode)):
        digest = exp.func("hash", arg.expressions[0].this.copy())
    elif (isinstance(arg, exp.Substring) and isinstance(arg.this, exp.MD5Digest)
          and isinstance(arg.this.this, exp.Encode) and arg.args.get("start") == exp.Literal.number(1)
          and arg.args.get("length") == exp.Literal.number(8)):
        # any other 64-bit hash will do: DuckDB's md5 costs seconds over a lake's ids, its own hash of the id
        # read backwards (a different input, so an unrelated value) a fraction of that
        digest = exp.func("hash", exp.func("reverse", arg.this.this.this.copy()))
    else:
        return node
    return exp.cast(exp.BitwiseRightShift(this=digest, expression=exp.Literal.number(1)), "BIGINT")
