"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis).

Every operation is called with many generated requests, as an admin (so that no route
is skipped for lack of role). No answer may be a 5xx, and every answer must match the
schema the document declares for it. The live stream is left out: it never ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from huoyan.store.accounts import Role
from serverkit import make_platform_app, write_recipe

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# A package upload is a raw archive: any bytes (a refusal is the expected answer).
for _media in ("application/x-tar", "application/gzip", "application/zip"):
    schemathesis.openapi.media_type(_media, st.binary(max_size=4096))


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory, model_file: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("fuzz")
    recipe = write_recipe(folder, "cell-1", model_file, "http")
    # Started here: schemathesis calls the app without running its lifespan for each call.
    app, p, keys = make_platform_app(f"sqlite:///{folder / 'db.sqlite'}", folder, [recipe], start_platform=False)
    p.start()
    try:
        yield app, keys.headers(Role.ADMIN)
    finally:
        p.stop()


def test_api_answers_within_its_schema(fuzzed_app: tuple[Any, dict[str, str]]) -> None:
    # One Hypothesis run per operation, driven here rather than by ``schemathesis.pytest``
    # (whose fixture loader does not work with pytest 9.2).
    app, headers = fuzzed_app
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=headers).exclude(path_regex=r"/live$")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    statuses: Counter[int] = Counter()

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            statuses[case.call_and_validate(headers=headers, checks=CHECKS).status_code] += 1

        fuzz()
    # The run reached the handlers, not only the validation layer.
    assert sum(statuses.values()) > 200 and statuses[200] > 50, statuses
