"""What several routers share: documented error answers and record-to-schema conversion."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import HTTPException, Path
from pydantic import BaseModel

from huoyan.core.text import Message
from huoyan.server.platform import Platform
from huoyan.server.schemas import InspectionOut

# Row ids are 32-bit integers in every database we support.
RowId = Annotated[int, Path(ge=1, le=2_147_483_647)]


class ErrorOut(BaseModel):
    detail: Any


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route may give (401 and 403 always)."""
    return {code: {"model": ErrorOut} for code in sorted({401, 403, *codes})}


def said(exc: Exception) -> str:
    """What an error says: its Message (translated for the reader by the error handler),
    else its English text."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], Message) else str(exc)


def not_found(what: str) -> HTTPException:
    """404 naming what is missing; ``what`` may be a Message, translated with it."""
    return HTTPException(404, Message("no {what}", what=what))


def with_reviews(p: Platform, rows: list[dict[str, Any]]) -> list[InspectionOut]:
    latest = p.reviews.latest([r["id"] for r in rows])
    return [InspectionOut.model_validate({**r, "review": latest.get(r["id"])}) for r in rows]


def attachment(filename: str) -> dict[str, str]:
    """A download's Content-Disposition: an ASCII name for old clients and the UTF-8 one
    (RFC 6266/5987) for the rest, so a station or shift named in Chinese downloads whole."""
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in filename)
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"}
