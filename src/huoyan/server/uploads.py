"""Request bodies read only after the caller is known, and never more than a limit.

FastAPI reads a route's form or JSON body before it runs the route's dependencies, so
an anonymous client could make the server spool a gigabyte to disk before its 401.
``BodyLimit`` caps every request body (by its Content-Length, and by counting what
actually arrives); the upload routes declare no body parameters, so authentication
runs first, and read their multipart form here. The form's fields are declared once as
a pydantic model, which also documents the request body in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from huoyan.core.text import Message

Form = TypeVar("Form", bound=BaseModel)
MB = 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the small text fields


def multipart_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` as a multipart form itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, Message("request bodies up to {mb} MB", mb=limit // MB))


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        yield chunk


async def read_form(request: Request, model: type[Form], file_field: str, max_file: int) -> tuple[Form, str]:
    """The request's multipart form as ``model`` (the file's bytes in ``file_field``), and
    the file's name as the client gave it.

    Call it after authorisation. Answers 413 past ``max_file``, 415 for another content
    type, 400 for a malformed form and 422 for missing or invalid fields."""
    limit = max_file + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(max_file)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, Message("send the image as multipart/form-data"))
    parser = MultiPartParser(request.headers, _limited(request.stream(), limit), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, Message("malformed form: {reason}", reason=exc.message)) from exc
    try:
        upload = form.get(file_field)
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, Message("the form needs a file in the field '{field}'", field=file_field))
        data = await upload.read()
        if len(data) > max_file:
            raise too_large(max_file)
        fields = {k: v for k, v in form.items() if isinstance(v, str) and k in model.model_fields}
        try:
            return model.model_validate({**fields, file_field: data}), upload.filename or ""
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_input=False)) from exc
    finally:
        await form.close()


class BodyLimit:
    """ASGI middleware: refuses request bodies over ``limit_for(path)`` bytes with 413,
    before they are read, or as soon as they pass it."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        received = 0

        async def counted() -> ASGIMessage:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, limit: int) -> None:
    body = b'{"detail":"request bodies up to %d MB"}' % (limit // MB)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def receive_file(request: Request, target: Path, limit: int) -> int:
    """Stream the raw request body into ``target`` (never more than ``limit`` bytes); its size.
    For large uploads (packages) that must not be held in memory."""
    received = 0
    with target.open("wb") as f:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(limit)
            f.write(chunk)
    return received
