"""Schemathesis against the live gateway's own `/openapi.json`, with real tokens.

For each role (an ops token, a driver's, a rider's) and each operation of the schema,
schemathesis generates requests that fit the schema (positive) and that do not (negative),
and each is sent to the gateway subprocess of the module (`gateway` fixture, real Redis).
Half the requests of an operation with a trip or driver id in its path use an id that exists
and that the role may use (else nearly all would stop at 403/404). Every response must pass:

- `not_a_server_error`: no 5xx;
- `response_schema_conformance`: the body matches what the schema declares for its status;
- the contract's error shape: every 4xx body is exactly `{"error": {"code", "detail"}}`.

Failures are collected across operations and reported together. The number of API calls is
written to the terminal when the module ends (one `schemathesis:` line, through pytest's
terminal reporter) and recorded per role with `record_property`. Examples are derandomized.

The SSE operation is only ever called on an ended trip (or an unknown id): on a live trip it
would stream until the heartbeat timeout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.integration.client import Api
from tests.integration.conftest import Gateway, token

CALLS: Counter[str] = Counter()
EXAMPLES = {"ops": 25, "driver": 15, "rider": 15}
"""Examples per operation and generation mode, for each role."""
DRIVER_ID = "d-schemathesis"
CHECKS = (not_a_server_error, response_schema_conformance)


@dataclass
class Targets:
    """Ids that exist, by role: what the role's requests use for half of their path ids."""

    pins: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def targets(gateway: Gateway, request: pytest.FixtureRequest) -> Iterator[Targets]:
    api = Api(gateway.base, token("ops"))
    requested = api.create_trip()
    ended = api.create_trip()
    assert api.post(f"/v1/trips/{ended['id']}/actions", {"action": "cancel"}).status_code == 200
    drivers = api.create_trip(driver_id=DRIVER_ID)
    yield Targets(
        pins={
            "ops": {"trip_id": requested["id"], "events_trip_id": ended["id"]},
            "driver": {"trip_id": drivers["id"], "driver_id": DRIVER_ID},
            "rider": {"trip_id": ended["id"]},
        },
        tokens={
            "ops": token("ops"),
            "driver": token("driver", DRIVER_ID),
            "rider": ended["rider_token"],
        },
    )
    _report(request)


def _report(request: pytest.FixtureRequest) -> None:
    by_role = ", ".join(f"{role} {CALLS[role]}" for role in EXAMPLES)
    statuses = ", ".join(
        f"{key.split()[-1]} x{n}" for key, n in sorted(CALLS.items()) if key.startswith("status")
    )
    line = f"schemathesis: {sum(CALLS[r] for r in EXAMPLES)} API calls ({by_role}); {statuses}"
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def error_shape_problem(status: int, body: bytes) -> str | None:
    """Why a 4xx body is not the contract's `{"error": {"code", "detail"}}`, or None."""
    if not 400 <= status < 500:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"{status} body is not JSON: {body[:200]!r}"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if (
        not isinstance(parsed, dict)
        or set(parsed) != {"error"}
        or not isinstance(error, dict)
        or set(error) != {"code", "detail"}
        or not all(isinstance(error[k], str) and error[k] for k in ("code", "detail"))
    ):
        return f"{status} body is not the contract's error shape: {body[:200]!r}"
    return None


def run_operation(
    operation: Any, mode: GenerationMode, pins: dict[str, str], auth: dict[str, str], role: str
) -> list[str]:
    """Up to EXAMPLES[role] generated requests for one operation; the problems found."""
    names = {p.name for p in operation.path_parameters}
    pinned = {n: pins[n] for n in names if n in pins}
    if operation.path.endswith("/events"):
        pinned = {"trip_id": pins.get("events_trip_id", pins["trip_id"])}
    strategy = operation.as_strategy(generation_mode=mode)
    if pinned:
        strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters=pinned))
    problems: list[str] = []
    label = f"{role} {mode.value} {operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES[role],
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        response = case.call(headers=auth, timeout=10)
        CALLS[role] += 1
        CALLS[f"status {response.status_code}"] += 1
        for check in CHECKS:
            try:
                case.validate_response(response, checks=[check], headers=auth)
            except BaseException as failure:  # schemathesis raises a BaseExceptionGroup
                problems.append(f"{label}: {check.__name__}: {failure}")
        shape = error_shape_problem(response.status_code, response.content)
        if shape:
            problems.append(f"{label}: {shape}")

    try:
        call()
    except Unsatisfiable:
        pass  # nothing to make negative (no parameters, no body)
    return problems


@pytest.mark.parametrize("role", list(EXAMPLES))
def test_api_answers_by_its_schema_and_the_contract(
    gateway: Gateway,
    targets: Targets,
    role: str,
    record_property: Callable[[str, object], None],
) -> None:
    """Generated requests, valid and not, with this role's token: no 5xx, responses as the
    OpenAPI schema declares them, every 4xx in the contract's error shape."""
    schema = schemathesis.openapi.from_url(f"{gateway.base}/openapi.json", timeout=10)
    auth = {"Authorization": f"Bearer {targets.tokens[role]}"}
    before = CALLS[role]
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            problems += run_operation(operation, mode, targets.pins[role], auth, role)
    record_property("api_calls", CALLS[role] - before)
    assert CALLS[role] > before
    assert not problems, "\n\n".join(dict.fromkeys(problems))
