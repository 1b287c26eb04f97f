"""Each product's catalogue of defect types: engineers keep it, reviewers pick from it
(``huoyan.store.catalogue``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import errors, not_found
from huoyan.server.schemas import DefectTypes, DefectTypesIn
from huoyan.server.security import Engineer, Operator
from huoyan.store.catalogue import defect_types, set_defect_types, station_defect_types

router = APIRouter(prefix="/api", tags=["defect types"])


@router.get("/products/{product}/defect-types", response_model=DefectTypes, responses=errors())
def product_types(product: str, p: Annotated[Platform, Depends(platform)], _: Operator) -> DefectTypes:
    """The product's defect types (empty: its reviews take any type)."""
    return DefectTypes(product=product, types=defect_types(p.engine, product))


@router.put("/products/{product}/defect-types", response_model=DefectTypes, responses=errors())
def set_product_types(
    product: str, body: DefectTypesIn, p: Annotated[Platform, Depends(platform)], principal: Engineer
) -> DefectTypes:
    """Replace the product's defect types; an empty list lets its reviews take any type again."""
    before = defect_types(p.engine, product)
    kept = set_defect_types(p.engine, product, body.types, principal.user.username)
    p.audit.add(principal.user.username, "defect-types-set", product, before=before, after=kept)
    return DefectTypes(product=product, types=kept)


@router.get("/stations/{station_id}/defect-types", response_model=DefectTypes, responses=errors(404))
def station_types(station_id: str, p: Annotated[Platform, Depends(platform)], _: Operator) -> DefectTypes:
    """The defect types of the product the station makes (any station that stored records)."""
    product, types = station_defect_types(p.engine, station_id)
    if product is None:
        raise not_found(Message("station '{station}'", station=station_id))
    return DefectTypes(product=product, types=types)
