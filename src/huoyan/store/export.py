"""Records exported as rows for CSV and Excel: streamed from the database, in constant memory.

The columns are the record's own (``core.records.InspectionRecord``) that a table cell can
hold, in the record's field order, with the recipe and model references and the number of
defect regions; JSON fields (rules, trigger) stay in the API. Rows come from a cursor that
fetches ``CHUNK`` at a time, so exporting a million records holds one chunk in memory.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import xlsxwriter
from sqlalchemy import Engine, func, select

from huoyan.core.records import InspectionRecord
from huoyan.store.records import RECORD_COLUMNS, RecordFilter, as_utc
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


def export_rows(engine: Engine, where: RecordFilter) -> Iterator[list[Any]]:
    """The filtered records, oldest first, one list of cell values per record."""
    columns = export_columns()
    regions = select(func.count(RegionRow.id)).where(RegionRow.inspection_id == InspectionRow.id).scalar_subquery()
    exprs = [
        _REFERENCES[c] if c in _REFERENCES else regions if c == "regions" else getattr(InspectionRow, c)
        for c in columns
    ]
    stmt = (
        select(*exprs)
        .join(RecipeRow, RecipeRow.id == InspectionRow.recipe_pk)
        .outerjoin(ModelRow, ModelRow.id == InspectionRow.model_pk)
        .order_by(InspectionRow.arrived_at, InspectionRow.id)
    )
    stmt = where.apply(stmt)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(stmt)
        for row in result:
            yield [as_utc(v).isoformat() if isinstance(v, datetime) else v for v in row]


def csv_chunks(engine: Engine, where: RecordFilter) -> Iterator[bytes]:
    """The records as UTF-8 CSV with a header row, a chunk of rows at a time. The byte-order
    mark lets Excel read Chinese text in it as UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(export_columns())
    for i, row in enumerate(export_rows(engine, where), start=1):
        writer.writerow(row)
        if i % CHUNK == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


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
