"""Property-based fuzzing of every operation in the OpenAPI document: never a 5xx.

Schemathesis generates requests from the service's own schema, both fitting it
(positive) and breaking it (negative: wrong types, missing fields, odd characters), and
sends them to the app in-process. Any 5xx answer fails the test with the request that
caused it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from faceverify.service.app import create_app
from faceverify.service.settings import ServiceSettings
from tests.service.helpers import admin_key

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

#: Examples per operation and mode: every parameter's edge cases, in seconds on 2 cores.
EXAMPLES = 6


@pytest.fixture(scope="module")
def api_schema(module_settings: ServiceSettings) -> Iterator[Any]:
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(module_settings))
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()  # the app's model, batcher and galleries close with the module


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_makes_the_server_fail(
    api_schema: Any, module_settings: ServiceSettings, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 18
    headers = {"X-API-Key": admin_key(module_settings)}  # past the key check, into every route

    for operation in operations:

        @hypothesis.given(case=operation.as_strategy(mode))
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            fuzz()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to break in, e.g., GET /healthz
