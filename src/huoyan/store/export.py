"""Records exported as rows for CSV and Excel: streamed from the database, in constant memory.

The columns are the record's own (``core.records.InspectionRecord``) that a table cell can
hold, in the record's field order, with the recipe and model references and the number of
defect regions; JSON fields (rules, trigger) stay in the API. Rows come from a cursor that
fetches ``CHUNK`` at a time, so exporting a million records holds one chunk in memory.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import xlsxwriter
from sqlalchemy import Engine, String, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from huoyan.core.records import InspectionRecord
from huoyan.store.records import RECORD_COLUMNS, RecordFilter
from huoyan.store.schema import InspectionRow, ModelRow, RecipeRow, RegionRow

CHUNK = 5000
_JSON = {"rules", "trigger"}
_REFERENCES = {"recipe_id": RecipeRow.recipe_id, "recipe_version": RecipeRow.version, "model_sha256": ModelRow.sha256}


def export_columns() -> list[str]:
    names = ["id"]
    for name in InspectionRecord.model_fields:
        if (name in RECORD_COLUMNS and name not in _JSON) or name in _REFERENCES:
            names.append(name)
    return [*names, "regions"]


class IsoUtc(FunctionElement[str]):
    """A UTC timestamp column as ISO 8601 text, formatted by the database: formatting a
    million datetimes in Python took longer than the rest of the export."""

    type = String()
    inherit_cache = True
    name = "iso_utc"


@compiles(IsoUtc, "sqlite")
def _iso_sqlite(element: IsoUtc, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    # SQLite keeps a DateTime as UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff'
    return f"(replace({compiler.process(column, **kw)}, ' ', 'T') || '+00:00')"


@compiles(IsoUtc, "postgresql")
def _iso_postgresql(element: IsoUtc, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"""to_char({compiler.process(column, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


_TIMES = {"arrived_at", "decided_at", "stored_at"}


def _cell(column: str, regions: Any) -> Any:
    if column in _REFERENCES:
        return _REFERENCES[column]
    if column == "regions":
        return regions
    if column in _TIMES:
        return IsoUtc(getattr(InspectionRow, column))
    return getattr(InspectionRow, column)


def export_statement(where: RecordFilter) -> Any:
    """The export's query: the filtered records' cells, oldest first."""
    columns = export_columns()
    regions = select(func.count(RegionRow.id)).where(RegionRow.inspection_id == InspectionRow.id).scalar_subquery()
    stmt = (
        select(*[_cell(c, regions) for c in columns])
        .join(RecipeRow, RecipeRow.id == InspectionRow.recipe_pk)
        .outerjoin(ModelRow, ModelRow.id == InspectionRow.model_pk)
        .order_by(InspectionRow.arrived_at, InspectionRow.id)
    )
    return where.apply(stmt)


def export_rows(engine: Engine, where: RecordFilter) -> Iterator[Sequence[Any]]:
    """The filtered records, oldest first, one row of cell values per record (times as
    ISO 8601 text in UTC)."""
    with engine.connect() as conn:
        yield from conn.execution_options(stream_results=True, yield_per=CHUNK).execute(export_statement(where))


def _header() -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(export_columns())
    # The byte-order mark lets Excel read Chinese text in the file as UTF-8.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def csv_chunks(engine: Engine, where: RecordFilter) -> Iterator[bytes]:
    """The records as UTF-8 CSV with a header row, a chunk of rows at a time. PostgreSQL
    writes the CSV itself (COPY ... TO STDOUT), which is several times faster than
    Python's csv module; elsewhere the rows come through a cursor and ``csv`` writes them."""
    yield _header()
    if engine.dialect.name == "postgresql":
        yield from _copy_csv(engine, where)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows = export_rows(engine, where)
    while chunk := list(itertools.islice(rows, CHUNK)):
        writer.writerows(chunk)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()


def _copy_csv(engine: Engine, where: RecordFilter) -> Iterator[bytes]:
    # COPY takes no parameters: the filter's values are rendered into the statement by
    # SQLAlchemy's PostgreSQL compiler, which quotes them.
    sql = str(export_statement(where).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:  # type: ignore[attr-defined]
            for block in copy:
                yield bytes(block)
    finally:
        raw.close()


#: Excel's last row is 1,048,576; a sheet holds this many records under its header row.
SHEET_ROWS = 1_048_575


def write_xlsx(engine: Engine, where: RecordFilter) -> Path:
    """The records in an Excel file (a temporary file the caller removes), written by
    XlsxWriter in constant-memory mode; more records than a sheet holds go on to the next."""
    fd, name = tempfile.mkstemp(prefix="huoyan-export-", suffix=".xlsx")
    os.close(fd)
    columns = export_columns()
    book = xlsxwriter.Workbook(name, {"constant_memory": True, "strings_to_numbers": False})
    try:
        bold = book.add_format({"bold": True})
        sheet, row_no, sheets = None, SHEET_ROWS, 0
        for row in export_rows(engine, where):
            if row_no >= SHEET_ROWS:
                sheets += 1
                sheet = book.add_worksheet(f"records {sheets}" if sheets > 1 else "records")
                sheet.write_row(0, 0, columns, bold)
                sheet.freeze_panes(1, 0)
                row_no = 0
            row_no += 1
            sheet.write_row(row_no, 0, row)  # type: ignore[union-attr]
        if sheet is None:
            book.add_worksheet("records").write_row(0, 0, columns, bold)
    finally:
        book.close()
    return Path(name)
