"""Re-inspection runs (``huoyan batch``): what each run re-inspected, and which parts it would judge otherwise."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import RowId, errors, not_found
from huoyan.server.schemas import ReinspectionDetail, ReinspectionResultOut, ReinspectionRunOut, VerdictChange
from huoyan.server.security import Operator
from huoyan.store import reinspections as R

router = APIRouter(prefix="/api", tags=["re-inspections"])


@router.get("/reinspections", response_model=list[ReinspectionRunOut], responses=errors())
def runs(p: Annotated[Platform, Depends(platform)], _: Operator) -> list[ReinspectionRunOut]:
    """Every re-inspection run, newest first, with how many of its images are stored."""
    stored = R.stored_counts(p.engine)
    return [ReinspectionRunOut(**run.model_dump(), stored=stored.get(run.id, 0)) for run in R.list_runs(p.engine)]


@router.get("/reinspections/{run_id}", response_model=ReinspectionDetail, responses=errors(404))
async def run_detail(
    p: Annotated[Platform, Depends(platform)],
    _: Operator,
    run_id: RowId,
    limit: Annotated[int, Query(ge=1, le=1000, description="changed parts per page")] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReinspectionDetail:
    """A run's verdict table (original x new) and the parts whose verdict it changed."""
    run = await asyncio.to_thread(R.get_run, p.engine, run_id)
    if run is None:
        raise not_found(Message("re-inspection run {id}", id=run_id))
    table = await asyncio.to_thread(R.verdict_table, p.engine, run_id)
    changed = await asyncio.to_thread(R.changed_results, p.engine, run_id, limit, offset)
    return ReinspectionDetail(
        **run.model_dump(),
        stored=sum(table.values()),
        table=[VerdictChange(original=o, verdict=v, parts=n) for (o, v), n in sorted(table.items(), key=str)],
        changed=[ReinspectionResultOut(**r) for r in changed],
    )
