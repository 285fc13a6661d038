"""The Athena views as files: loading, ordering by dependency, and transpiling Trino SQL for DuckDB."""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parent.parent / "athena_sql"
DEFAULT_HORIZON_DAYS = 30
_PARAM = re.compile(r"\$\{([a-z_]+)\}")


# The statements render() filled last, each with its template and values: the local engine transpiles a
# statement it finds here from its template's DuckDB text (TranspileCache) instead of parsing it again.
_RENDERED: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
_RENDERED_KEEP = 256
_rendered_lock = threading.Lock()


def render(sql: str, params: Mapping[str, object]) -> str:
    """Fill ``${name}`` placeholders; a placeholder without a value is an error, not a silent blank."""
    used: dict[str, str] = {}

    def value(m: re.Match[str]) -> str:
        if m.group(1) not in params:
            raise KeyError(f"no value for ${{{m.group(1)}}} in the SQL")
        used[m.group(1)] = str(params[m.group(1)])
        return used[m.group(1)]

    out = _PARAM.sub(value, sql)
    with _rendered_lock:
        _RENDERED[out] = (sql, tuple(sorted(used.items())))
        while len(_RENDERED) > _RENDERED_KEEP:
            del _RENDERED[next(iter(_RENDERED))]
    return out


def rendered_from(sql: str) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """For a statement that render() gave (after any comment lines put before it, such as a refresh
    statement's tag): (those comment lines, its template, its values); None for any other statement."""
    prefix = 0
    while True:
        found = _RENDERED.get(sql[prefix:])
        if found is not None:
            return sql[:prefix], found[0], found[1]
        end = sql.find("\n", prefix)
        if not sql.startswith("--", prefix) or end < 0:
            return None
        prefix = end + 1


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


# The refresh's state (tables named so) is written batch after batch, each batch's rows in ts order: a
# comparison of one of these with a value selects the row groups of a few batches or of a span of event time
# (see reads()). The lake's tables are read by partition.
NARROWING = frozenset({"ts", "batch", "received_at", "routed_at"})
STATE_TABLES = re.compile(r"^(state|stage)_")


def scans(sql: str) -> dict[str, int]:
    """:func:`reads` as one count a table: its whole reads, plus one for its narrowed reads together."""
    return {name: whole + narrow for name, (whole, narrow) in reads(sql).items()}


@functools.lru_cache(maxsize=512)
def reads(sql: str) -> dict[str, tuple[int, bool]]:
    """How many times Athena reads each table (or view) a statement names, for the bill. Trino plans a named
    query (``WITH``) inline wherever it is referenced, so a CTE referenced twice reads its tables twice
    (trinodb/trino#10: named queries are inlined wherever they are referenced), and Athena bills every scan;
    DuckDB reuses such a CTE, so the local engine's time does not show it, its bill does. A statement's write
    target (``INSERT INTO t``) is not read; a table named again in its query is (``NOT EXISTS (SELECT ...
    FROM t ...)``). A read narrowed by a comparison of ``ts`` or by ``batch =`` with a value (no column) reads
    the row groups that hold those rows (the state is written in batch and ts order, and the engine skips row
    groups by their statistics), as does a ``DELETE`` narrowed so (its files are dropped whole): all narrowed
    reads of a table count as one read of it, an upper bound. Per table: (whole reads, whether it is read
    narrowed)."""
    from sqlglot import exp

    tree = parse_trino(sql)
    ctes = {c.alias_or_name: c.this for c in tree.find_all(exp.CTE)}
    target = tree.this if isinstance(tree, exp.Insert) else None
    if isinstance(target, exp.Schema):
        target = target.this

    def narrowed(table: Any) -> bool:
        """Whether the WHERE of the query that reads ``table`` compares one of its NARROWING columns (named
        by its alias, or unqualified when it is the query's only source) with a value."""
        if not STATE_TABLES.match(table.name):
            return False
        query = tree if table is tree.this and isinstance(tree, exp.Delete) else table.find_ancestor(exp.Select)
        where = query.args.get("where") if query is not None else None
        if where is None:
            return False
        alone = not query.args.get("joins")
        for cmp in where.find_all(exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE):
            if isinstance(query, exp.Select) and cmp.find_ancestor(exp.Select) is not query:
                continue  # a subquery's own predicate
            for col, other in ((cmp.left, cmp.right), (cmp.right, cmp.left)):
                if isinstance(col, exp.Column) and col.name in NARROWING and other.find(exp.Column) is None \
                        and (col.table == table.alias_or_name or (not col.table and alone)):
                    return True
        return False

    whole: collections.Counter[str] = collections.Counter()
    narrow: set[str] = set()

    def count(node: Any, inlining: frozenset[str]) -> None:
        # the named queries defined below this node are read where they are referenced, not where defined
        for t in node.walk(prune=lambda n: isinstance(n, exp.With) and n is not node):
            if not isinstance(t, exp.Table) or not t.name or t is target:
                continue
            if t.name in ctes and t.name not in inlining:
                count(ctes[t.name], inlining | {t.name})
            elif narrowed(t):
                narrow.add(t.name)
            else:
                whole[t.name] += 1

    count(tree, frozenset())
    return {name: (whole[name], name in narrow) for name in whole.keys() | narrow}


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


# --- transpiling a template once ----------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+")
_TEXT = re.compile(r"[A-Za-z0-9 _.:+-]*")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r"'(?:[^']|'')*'")


def _placeholder_kinds(template: str, values: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """How each value goes into its template: ``number`` (digits: a literal, in a string or not),
    ``timestampN`` (a timestamp with N fractional digits, which sqlglot reads for a TIMESTAMP literal's
    precision), ``text`` (other plain text, only ever inside a string literal) or ``expression`` (SQL put
    as it is)."""
    kinds = []
    for name, value in values:
        stamp = _TIMESTAMP.fullmatch(value)
        if _NUMBER.fullmatch(value):
            kinds.append("number")
        elif stamp:
            kinds.append(f"timestamp{len(stamp.group(1) or '.') - 1}")
        elif _TEXT.fullmatch(value) and all(template[m.start() - 1:m.start()] == "'"
                                      and template[m.end():m.end() + 1] == "'"
                                      for m in re.finditer(re.escape("${" + name + "}"), template)):
            kinds.append("text")
        else:
            kinds.append("expression")
    return tuple(kinds)


def _sentinels(template: str, names: list[str], kinds: tuple[str, ...]) -> dict[str, str]:
    """A stand-in value per placeholder, of its kind, that the template does not contain otherwise."""
    out = {}
    for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        n = 0
        while True:
            if kind.startswith("timestamp"):
                digits = int(kind.removeprefix("timestamp"))
                fraction = "." + "7" * digits if digits else ""
                token = f"2999-0{1 + n % 9}-{1 + i:02d} 00:{n // 9 % 60:02d}:00{fraction}"
            else:
                token = {"number": f"{918_273_600 + 97 * i + n}", "text": f"sb~{name}~{n}~",
                         "expression": f"(sb_param_{i}_{n} = {i})"}[kind]
            if token not in template:
                break
            n += 1
        out[name] = token
    return out


def _code_version() -> str:
    """What a transpilation depends on besides the template: this module's transforms and sqlglot's version
    (read from its files: importing sqlglot, or asking the package metadata, costs more than the cache saves)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    spec = importlib.util.find_spec("sqlglot")
    if spec is not None and spec.origin is not None:
        version = Path(spec.origin).parent / "_version.py"
        digest.update(version.read_bytes() if version.exists() else str(os.stat(spec.origin).st_mtime_ns).encode())
    return digest.hexdigest()


def default_cache_path() -> Path:
    """Where the transpiled templates are kept: ``$STREAMBOARD_CACHE_DIR``, else the user's cache directory
    (``$XDG_CACHE_HOME``, else ``~/.cache``), under ``streamboard/``; shared by every data directory."""
    folder = os.environ.get("STREAMBOARD_CACHE_DIR") or \
        str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamboard")
    return Path(folder) / "duckdb-sql.json"


class TranspileCache:
    """DuckDB text of the statements that render() filled from a template (the refresh's steps), transpiled
    once per template and kept in ``path`` (when given) for the next process: the template is transpiled
    with a stand-in for each placeholder, and the values of each statement put into the DuckDB text where
    the stand-ins came out. A template's entry is made only when that gives the same statement as
    transpiling the filled template (the first statement it is made for is checked; a template where it
    does not is always transpiled whole). The entry's key is the template, how its values go into it and
    the transpiler's version (this module and sqlglot's), so a change to any of them transpiles again. Any
    other statement is transpiled as it is (``to_duckdb``). Also gives what a statement reads
    (``touches``) and how many times (``scans``), for the bill, from the same entry."""

    KEEP = 512  # entries kept in the file, the latest made

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict[str, Any]] | None = None
        self._version: str | None = None
        self._lock = threading.Lock()

    def to_duckdb(self, trino_sql: str) -> str:
        found = self._entry(trino_sql)
        if found is None:
            return to_duckdb(trino_sql)
        prefix, entry, values = found
        return prefix + _fill(entry["duckdb"], entry["sentinels"], values)

    def touches(self, trino_sql: str) -> tuple[frozenset[str], frozenset[str], bool]:
        found = self._entry(trino_sql)
        if found is None:
            return touches(trino_sql)
        _, entry, values = found
        # the names in an expression value too (a predicate's columns; keywords are no table's columns)
        named = {word for name in entry["expressions"] for word in _WORD.findall(_STRING.sub("", values[name]))}
        return frozenset(entry["tables"]), frozenset(entry["columns"]) | named, bool(entry["star"])

    def scans(self, trino_sql: str) -> dict[str, int]:
        """:func:`scans` of a statement, from its template's entry (a placeholder's value names no table)."""
        found = self._entry(trino_sql)
        return scans(trino_sql) if found is None else dict(found[1]["scans"])

    def _entry(self, trino_sql: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
        source = rendered_from(trino_sql)
        if source is None:
            return None
        prefix, template, pairs = source
        names = [name for name, _ in pairs]
        kinds = _placeholder_kinds(template, pairs)
        if any(kind == "expression" and not _plain_sql(value) for (_, value), kind in zip(pairs, kinds, strict=True)):
            return None  # SQL that might read differently in DuckDB: the whole statement is transpiled
        with self._lock:
            if self._version is None:
                self._version = _code_version()
            key = hashlib.sha256("\0".join([self._version, template, *names, *kinds]).encode()).hexdigest()
            entries = self._load()
            entry = entries.get(key)
            if entry is None:
                entry = _make_entry(template, names, kinds, dict(pairs))
                entries[key] = entry
                self._save(entries)
        return None if entry["duckdb"] is None else (prefix, entry, dict(pairs))

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.exists():
                try:
                    self._entries = dict(json.loads(self.path.read_text()))
                except (OSError, ValueError):
                    self._entries = {}  # unreadable: made again
        return self._entries

    def _save(self, entries: dict[str, dict[str, Any]]) -> None:
        while len(entries) > self.KEEP:
            del entries[next(iter(entries))]
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries))
            os.replace(tmp, self.path)  # a process that writes at the same time may drop an entry: made again
        except OSError:
            pass  # nowhere to keep them: this process keeps them in memory


_PLAIN_TOKEN = re.compile(r"(?i:(?:and|or|not|in|is|null|true|false)\b)|\s+|'(?:[^']|'')*'|\d+\b|"
                          r"[a-z_][a-z0-9_]*\b(?!\s*\()|[(),=]")
# lower-case words that are SQL, not a column's name
_NOT_NAMES = {"select", "from", "where", "case", "when", "then", "else", "end", "cast", "try_cast", "interval",
              "timestamp", "date", "time", "between", "like", "exists", "distinct", "over", "as", "by", "with",
              "union", "array", "row", "map", "any", "all", "some", "escape", "at", "zone", "current_timestamp",
              "current_date", "current_time", "localtime", "localtimestamp", "default", "values", "order",
              "group", "limit", "having", "join", "on", "using", "filter", "within", "uescape", "x", "e"}


def _plain_sql(value: str) -> bool:
    """Whether an expression is spelled the same in Trino and DuckDB, so that it goes into a transpiled
    template as it is: string and integer literals, lower-case column names, ``=``, ``IN``, ``IS``, ``NULL``,
    ``AND``/``OR``/``NOT``, ``true``/``false``, parentheses and commas; no function call, operator or other
    keyword (the refresh's input predicate, a quoted string, NULL)."""
    pos = 0
    for m in _PLAIN_TOKEN.finditer(value):
        if m.start() != pos or m.group().lower() in _NOT_NAMES:
            return False
        pos = m.end()
    return pos == len(value)


def _fill(duck: str, sentinels: dict[str, str], values: Mapping[str, str]) -> str:
    for name, token in sentinels.items():
        duck = duck.replace(token, values[name])
    return duck


def _make_entry(template: str, names: list[str], kinds: tuple[str, ...], values: dict[str, str]) -> dict[str, Any]:
    """A template's DuckDB text with stand-ins, and what it reads; ``duckdb`` None when the stand-ins do not
    give the statement that transpiling the filled template gives."""
    from sqlglot import exp

    sentinels = _sentinels(template, names, kinds)
    try:
        stand_in = _PARAM.sub(lambda m: sentinels[m.group(1)], template)
        duck = to_duckdb(stand_in)
        direct = to_duckdb(_PARAM.sub(lambda m: values[m.group(1)], template))
        same = _same_duckdb(_fill(duck, sentinels, values), direct)
        tables, columns, star = touches(stand_in)
        read = scans(stand_in)
    except Exception:  # noqa: BLE001 - sqlglot raises several error types: transpiled whole, where it says why
        return {"duckdb": None}
    if not same:
        return {"duckdb": None}
    stand_in_columns = {c.name for token in sentinels.values() if token.startswith("(")
                        for c in parse_trino(f"SELECT 1 WHERE {token}").find_all(exp.Column)}
    return {"duckdb": duck, "sentinels": sentinels, "tables": sorted(tables), "scans": read,
            "columns": sorted(columns - stand_in_columns), "star": star,
            "expressions": [name for name, kind in zip(names, kinds, strict=True) if kind == "expression"]}


def _same_duckdb(a: str, b: str) -> bool:
    """The same DuckDB statement: equal text, or equal syntax trees (an expression value keeps its own
    spacing where sqlglot's would differ)."""
    if a == b:
        return True
    import sqlglot

    return bool(sqlglot.parse_one(a, read="duckdb") == sqlglot.parse_one(b, read="duckdb"))
