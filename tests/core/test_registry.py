"""The dispatch table: registration, parameter checks, errors, plugins."""

from __future__ import annotations

import attrs
import pytest
import structlog

from dvsd.registry import (
    DuplicateHandler,
    HandlerContext,
    Registry,
    Reply,
    RequestError,
    View,
    execute,
    handler,
    load_handlers,
)
from dvsd.rqst import RequestType, ReturnCode
from dvsd.validators import in_range, kernel_name


@attrs.frozen
class DcParams:
    dcid: int = attrs.field(validator=in_range(0, 31))
    name: str = attrs.field(default="dc", validator=kernel_name(15))


def context() -> HandlerContext:
    return HandlerContext(
        node_id=3,
        kernel=None,
        config=None,
        log=structlog.get_logger(),
        requester=1,
        view=View(frozenset({1, 3}), "v1"),
        deadline=0.0,
    )


@pytest.fixture
def registry() -> Registry:
    table = Registry()

    @handler(RequestType.GETDCINFO, params=DcParams, registry=table)
    async def get_dc(ctx, params):
        """Show one DC."""
        if params.dcid == 7:
            raise RequestError(-303, "DC 7 is not running")
        if params.dcid == 8:
            raise RuntimeError("boom")
        return Reply(
            items=[{"dcid": params.dcid, "name": params.name, "on": ctx.node_id}]
        )

    @handler(RequestType.PS, many_lines=True, registry=table)
    async def ps(ctx, params):
        return Reply(items=[])

    return table


async def test_handler_runs_with_built_params(registry):
    reply = await execute(registry, RequestType.GETDCINFO, {"dcid": 2}, context())
    assert reply == Reply(items=[{"dcid": 2, "name": "dc", "on": 3}])
    entry = registry.get(RequestType.GETDCINFO)
    assert entry.summary == "Show one DC."
    assert registry.get(RequestType.PS).many_lines


@pytest.mark.parametrize(
    ("params", "sentence"),
    [
        ({"dcid": 40}, "dcid must be in 0..31, got 40"),
        ({"dcid": 1, "name": "x" * 20}, "name must be at most 15 bytes in UTF-8"),
        ({}, "missing parameter dcid"),
        ({"dcid": 1, "colour": "red"}, "does not take parameter colour"),
        ([1, 2], "parameters must be a map"),
        ({"dcid": "one"}, "dcid"),
        ({"dcid": "1"}, "expected an integer, got '1'"),
        ({"dcid": True}, "expected an integer, got True"),
        ({"dcid": 1, "name": True}, "expected a string, got True"),
    ],
)
async def test_bad_params_name_the_field(registry, params, sentence):
    reply = await execute(registry, RequestType.GETDCINFO, params, context())
    assert reply.rcode == ReturnCode.BAD_REQUEST
    assert sentence in reply.error


async def test_request_error_keeps_its_code(registry):
    reply = await execute(registry, RequestType.GETDCINFO, {"dcid": 7}, context())
    assert (reply.rcode, reply.error) == (-303, "DC 7 is not running")


async def test_crashing_handler_becomes_internal(registry):
    reply = await execute(registry, RequestType.GETDCINFO, {"dcid": 8}, context())
    assert reply.rcode == ReturnCode.INTERNAL
    assert "boom" in reply.error


async def test_unknown_type_is_a_bad_request(registry):
    reply = await execute(registry, 4242, {}, context())
    assert reply.rcode == ReturnCode.BAD_REQUEST
    assert "unknown request type 4242" in reply.error


def test_duplicate_registration_is_refused(registry):
    with pytest.raises(DuplicateHandler, match="registered by"):

        @handler(RequestType.PS, registry=registry)
        async def other_ps(ctx, params):
            return Reply()


def test_plugin_numbers_and_names_are_checked():
    with pytest.raises(ValueError, match="give the handler a name"):
        handler(1500)
    with pytest.raises(ValueError, match="plugin request types start at 1000"):
        handler(900, name="MINE")
    with pytest.raises(TypeError, match="must be an attrs class"):
        handler(1500, name="MINE", params=dict)


def test_plugins_load_through_the_entry_point_group(monkeypatch, tmp_path):
    import importlib.metadata

    module = tmp_path / "dvsd_plugin_probe.py"
    module.write_text(
        "from dvsd.registry import handler, Reply\n"
        "@handler(1234, name='PROBE')\n"
        "async def probe(ctx, params):\n"
        "    return Reply()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = importlib.metadata.EntryPoint(
        "broken", "no_such_module_xyz", "dvsd.handlers"
    )
    good = importlib.metadata.EntryPoint("probe", "dvsd_plugin_probe", "dvsd.handlers")
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: [broken, good] if group == "dvsd.handlers" else [],
    )
    table = load_handlers(plugins=True)
    assert table.by_name("PROBE").rqst_type == 1234
    table.handlers.pop(1234)
