"""OPC UA Machine Vision server against real clients: asyncua, and node-opcua run by Node.js."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from huoyan.io.opcua import nodeids as ids
from huoyan.runner import open_station
from huoyan.store.records import query_records
from linepeers import free_port, station_thread, until
from test_station import load, write_recipe, write_video

PEER = Path(__file__).parent / "opcua_peer"


def opcua_recipe(tmp: Path, model: Path, port: int, opcua: str, frames: int = 10, extra: str = "") -> Any:
    video = tmp / "cam.avi"
    write_video(video, frames)
    src = f"{{type: camera, device: {video}, mode: trigger}}"
    feedback = f"feedback:\n  opcua: {{endpoint: 'opc.tcp://127.0.0.1:{port}/huoyan/', {opcua}}}\n{extra}"
    return load(write_recipe(tmp, model, src, "part_id: {from: trigger}\n" + feedback))


async def browse(client: Client, *path: str) -> Any:
    ns = await client.get_namespace_index(ids.NAMESPACE_URI)
    return await client.nodes.objects.get_child([f"{ns}:{p}" for p in path])


def start_args(meas: str = "", part: str = "") -> tuple[Any, ...]:
    """StartSingleJob's or StartContinuous's arguments: MeasId, PartId, no recipe or product, no parameters."""
    return (
        ua.MeasIdDataType(Id=meas),
        ua.PartIdDataType(Id=part),
        ua.RecipeIdExternalDataType(Id=""),
        ua.ProductIdDataType(Id=""),
        ua.Variant([], ua.VariantType.Variant),
    )


async def state(node: Any) -> str:
    current = await node.get_child("0:CurrentState")
    return (await current.read_value()).Text


def test_single_job_cycle_and_forbidden_transitions(model_file: Path, tmp_path: Path) -> None:
    port = free_port()
    recipe = opcua_recipe(tmp_path, model_file, port, "anonymous: true, security: [none]")
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")

    async def plc() -> dict[str, Any]:
        async with Client(f"opc.tcp://127.0.0.1:{port}/huoyan/") as client:
            await client.load_data_type_definitions()
            top = await browse(client, "st-1", "VisionStateMachine")
            mv = await client.get_namespace_index(ids.NAMESPACE_URI)
            hy = await client.get_namespace_index(ids.HUOYAN_URI)
            auto = await top.get_child(f"{mv}:AutomaticModeStateMachine")
            assert await state(top) == "Operational" and await state(auto) == "Ready"
            state_id = await (await auto.get_child("0:CurrentState")).get_child("0:Id")
            assert await state_id.read_value() == ua.NodeId(ids.AUTO_STATES["Ready"][0], mv)

            # Stop is not allowed in Ready: a Bad status, and nothing changes.
            with pytest.raises(ua.UaStatusCodeError) as denied:
                await auto.call_method(f"{mv}:Stop", ua.Variant(0, ua.VariantType.Int32), "")
            assert denied.value.code == ua.StatusCodes.BadInvalidState
            assert await state(auto) == "Ready"

            # The lot every part triggered from now on belongs to (Huoyan's namespace).
            own = await client.get_namespace_index("urn:huoyan:station:st-1")
            system = await browse(client, "st-1")
            await (await system.get_child(f"{own}:Lot")).write_value(ua.Variant("L-2026-118", ua.VariantType.String))
            job, error = await auto.call_method(f"{mv}:StartSingleJob", *start_args(meas="M-7", part="P-42"))
            assert error == 0 and job.Id
            last = await browse(client, "st-1", "ResultManagement", "Results", "LastResult")
            part_node = await last.get_child(f"{mv}:PartId")

            async def result_for_part() -> bool:
                value = await part_node.read_value()
                return value is not None and value.Id == "P-42"

            await until(result_for_part)
            result = await last.read_value()
            content = json.loads(result.ResultContent[1].Value)
            verdict = await (await last.get_child(f"{hy}:Verdict")).read_value()
            await until(lambda: _is(auto, "Ready"))

            # Halted: every automatic-mode method is refused until Reset and SelectModeAutomatic.
            await top.call_method(f"{mv}:Halt", ua.Variant(0, ua.VariantType.Int32), "maintenance")
            assert await state(top) == "Halted"
            with pytest.raises(ua.UaStatusCodeError) as halted:
                await auto.call_method(f"{mv}:StartSingleJob", *start_args(meas="M-7", part="P-42"))
            assert halted.value.code == ua.StatusCodes.BadInvalidState
            with pytest.raises(ua.UaStatusCodeError):
                await top.call_method(f"{mv}:SelectModeAutomatic")
            await top.call_method(f"{mv}:Reset", ua.Variant(0, ua.VariantType.Int32), "")
            await top.call_method(f"{mv}:SelectModeAutomatic")
            assert await state(top) == "Operational" and await state(auto) == "Ready"
            return {"job": job.Id, "result": result, "content": content, "verdict": verdict}

    with station_thread(opened, port):
        got = asyncio.run(plc())
    result, content = got["result"], got["content"]
    assert result.PartId.Id == "P-42" and result.MeasId.Id == "M-7" and result.JobId.Id == got["job"]
    rows = query_records(opened.engine)
    # ResultState says the result is complete (1) whatever the verdict; the verdict is in
    # the structured content and in Huoyan's Verdict variable.
    assert result.ResultState == ids.RESULT_COMPLETED
    structured = result.ResultContent[0].Value
    assert structured.Verdict == ids.VERDICTS[rows[0]["verdict"]] == got["verdict"]
    assert structured.RecordKey == rows[0]["key"] and structured.Regions == len(content["regions"])
    assert result.ExternalRecipeId.Id == "washer-top" and result.ExternalRecipeId.Version == "1"
    assert result.InternalConfigurationId.Id == opened.model_sha256
    assert [r["part_id"] for r in rows] == ["P-42"] and rows[0]["lot"] == "L-2026-118"
    assert content["key"] == rows[0]["key"] and content["verdict"] == rows[0]["verdict"]


async def _is(node: Any, name: str) -> bool:
    return await state(node) == name


def test_prepare_recipe_switches_the_station(model_file: Path, tmp_path: Path) -> None:
    port = free_port()
    other = tmp_path / "other"
    other.mkdir()
    write_recipe(other, model_file, "{type: camera, device: PLACEHOLDER, mode: trigger}")
    table = f"  recipes: [{{index: 2, file: {other / 'recipe.yaml'}}}]\n"
    recipe = opcua_recipe(tmp_path, model_file, port, "anonymous: true, security: [none]", extra=table)
    # The second recipe: same station and source, another id and decision.
    text = (tmp_path / "recipe.yaml").read_text()
    body = text.split("feedback:")[0].replace("recipe: washer-top", "recipe: washer-bottom")
    (other / "recipe.yaml").write_text(body.replace("storage: {keep_ok_every: 2}", "decision: {threshold: 1.0e9}"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")

    async def plc() -> tuple[str, Any]:
        async with Client(f"opc.tcp://127.0.0.1:{port}/huoyan/") as client:
            await client.load_data_type_definitions()
            mv = await client.get_namespace_index(ids.NAMESPACE_URI)
            recipes = await browse(client, "st-1", "RecipeManagement")
            with pytest.raises(ua.UaStatusCodeError) as unknown:
                await recipes.call_method(
                    f"{mv}:PrepareRecipe", ua.RecipeIdExternalDataType(Id="no-such"), ua.RecipeIdInternalDataType(Id="")
                )
            assert unknown.value.code == ua.StatusCodes.BadInvalidArgument
            internal, completed, error = await recipes.call_method(
                f"{mv}:PrepareRecipe",
                ua.RecipeIdExternalDataType(Id="washer-bottom"),
                ua.RecipeIdInternalDataType(Id=""),
            )
            assert completed and error == 0
            auto = await browse(client, "st-1", "VisionStateMachine", "AutomaticModeStateMachine")
            await auto.call_method(f"{mv}:StartSingleJob", *start_args(part="Q-1"))
            last = await browse(client, "st-1", "ResultManagement", "Results", "LastResult")

            async def done() -> bool:
                value = await last.read_value()
                return value is not None and value.PartId.Id == "Q-1"

            await until(done)
            return internal.Id, await last.read_value()

    with station_thread(opened, port):
        internal_id, result = asyncio.run(plc())
    assert internal_id == "washer-bottom:1"
    assert result.ExternalRecipeId.Id == "washer-bottom"
    assert result.ResultContent[0].Value.Verdict == ids.VERDICTS["OK"]  # its threshold passes all
    rows = query_records(opened.engine)
    assert [(r["part_id"], r["recipe_id"]) for r in rows] == [("Q-1", "washer-bottom")]


def test_security_users_and_encryption(model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("HUOYAN_TEST_PLC_PASSWORD", "s3cret")
    recipe = opcua_recipe(
        tmp_path, model_file, port, "users: {plc: HUOYAN_TEST_PLC_PASSWORD}, security: [basic256sha256]"
    )
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    url = f"opc.tcp://127.0.0.1:{port}/huoyan/"

    async def connect(user: str | None, password: str | None, secure: bool) -> str:
        client = Client(url)
        if secure:
            key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
            if not key.exists():
                await setup_self_signed_certificate(
                    key,
                    cert,
                    "urn:huoyan:test:client",
                    "localhost",
                    [ExtendedKeyUsageOID.CLIENT_AUTH],
                    {"commonName": "test client"},
                )
            client.application_uri = "urn:huoyan:test:client"
            await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        if user:
            client.set_user(user)
            client.set_password(password or "")
        try:
            async with client:
                top = await browse(client, "st-1", "VisionStateMachine")
                return await state(top)
        except Exception as exc:
            return f"refused: {type(exc).__name__}"

    async def attempts() -> list[str]:
        return [
            await connect("plc", "s3cret", secure=True),
            await connect(None, None, secure=True),
            await connect("plc", "wrong", secure=True),
            await connect("plc", "s3cret", secure=False),
        ]

    with station_thread(opened, port):
        ok, anonymous, wrong, plain = asyncio.run(attempts())
    assert ok == "Operational"
    assert anonymous.startswith("refused") and wrong.startswith("refused") and plain.startswith("refused")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_opcua_gets_results_by_events_on_the_server_object_and_by_filter(model_file: Path, tmp_path: Path) -> None:
    if not (PEER / "node_modules" / "node-opcua-client").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node-opcua is not installed; .ci/run runs npm ci in tests/opcua_peer")
        pytest.skip("run `npm ci --prefix tests/opcua_peer` first")
    port = free_port()
    # Every part NG: a conforming client must still read the result as Completed.
    recipe = opcua_recipe(
        tmp_path, model_file, port, "anonymous: true, security: [none]", extra="decision: {threshold: 1.0e-6}\n"
    )
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    with station_thread(opened, port):
        out = subprocess.run(
            ["node", str(PEER / "peer.js"), f"opc.tcp://127.0.0.1:{port}/huoyan/", "st-1", "3"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr + out.stdout
    peer = json.loads(next(line for line in out.stdout.splitlines() if line.startswith('{"namespaceIndex"')))
    rows = {r["key"]: r for r in query_records(opened.engine)}
    assert len(rows) == 3 and {r["verdict"] for r in rows.values()} == {"NG"}

    # One ResultReady event per part, received on the Server object, every mandatory field set.
    events = peer["resultEvents"]
    assert [e["partId"] for e in events] == ["N-1", "N-2", "N-3"]
    assert [e["jobId"] for e in events] == peer["jobIds"] and len(set(peer["jobIds"])) == 3
    for e in events:
        row = rows[e["resultId"]]
        assert e["sourceName"] == "st-1" and e["isPartial"] is False and e["creationTime"]
        assert e["resultState"] == ids.RESULT_COMPLETED
        assert e["internalRecipeId"] == "washer-top:1"
        assert e["internalConfigurationId"] == opened.model_sha256
        assert e["verdict"] == ids.VERDICTS["NG"] and e["message"]["verdict"] == "NG" == row["verdict"]
    # The state changes of each job came as transition events too.
    assert peer["transitions"].count("ReadyToSingleExecution") == 3
    assert peer["transitions"].count("SingleExecutionToReadyAuto") == 3

    assert peer["resultState"] == ids.RESULT_COMPLETED and peer["verdictInContent"] == ids.VERDICTS["NG"]
    assert json.loads(peer["resultContent"][1])["part_id"] == "N-3"
    # GetResultListFiltered: newest first, filtered by state, part and job, paged.
    assert peer["all"]["parts"] == ["N-3", "N-2", "N-1"] and peer["all"]["isComplete"] is True
    assert peer["completed"]["count"] == 3 and peer["failed"]["count"] == 0
    assert peer["byPart"]["parts"] == ["N-2"] and peer["byJob"]["parts"] == ["N-1"]
    assert peer["firstTwo"]["parts"] == ["N-3", "N-2"] and peer["firstTwo"]["isComplete"] is False
    assert peer["all"]["handle"] > 0
    assert peer["components"] == {
        "count": 17,
        "resultState": ids.RESULT_COMPLETED,
        "partId": "N-1",
        "jobId": peer["jobIds"][0],
        "internalConfigurationId": opened.model_sha256,
    }
    assert peer["releaseStatus"] == "Good" and peer["releaseAgainStatus"] == "BadInvalidArgument"
    assert peer["haltStatus"] == "Good" and peer["stateAfterHalt"] == "Halted"
    assert peer["autoStatusWhileHalted"] == "BadStateNotActive"
    assert peer["stopInHalted"] == "BadInvalidState"
