"""Station events and alarms, and their acknowledgement: who saw an alarm, when, and what they did."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import RowId, errors, not_found, said
from huoyan.server.schemas import AckIn, EventOut
from huoyan.server.security import Operator, Reviewer
from huoyan.store.records import AckRefused, acknowledge, get_event, query_events

router = APIRouter(prefix="/api", tags=["alarms"])


@router.get("/events", response_model=list[EventOut], responses=errors())
def events(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    station: str | None = None,
    severity: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    """Station events and alarms, newest first, with who acknowledged each alarm."""
    rows = query_events(p.engine, station, severity, limit, newest_first=True)
    return [EventOut.model_validate(e) for e in rows]


@router.post("/events/{event_id}/ack", response_model=EventOut, responses=errors(404, 409))
def ack(p: Annotated[Platform, Depends(platform)], principal: Reviewer, event_id: RowId, body: AckIn) -> EventOut:
    """Acknowledge a raised alarm, once, with a comment; the audit trail keeps it too."""
    who = principal.user.username
    try:
        acknowledge(p.engine, event_id, who, body.comment)
    except LookupError as exc:
        raise not_found(Message("event {id}", id=event_id)) from exc
    except AckRefused as exc:
        raise HTTPException(409, said(exc)) from exc
    p.audit.add(who, "alarm-acknowledged", str(event_id), comment=body.comment)
    return EventOut.model_validate(get_event(p.engine, event_id))
