"""The server's handle of a station on another PC (``server.remote.RemoteStation``): its
status is its last report until the station falls silent; an action waits for the
station's confirmation, says so when none comes, and stays queued for its next report."""

from __future__ import annotations

import asyncio
import time

import pytest

from huoyan.core.recipe import Recipe
from huoyan.core.station import CommandDone, LinkReport
from huoyan.runner.status import station_status
from huoyan.server import remote
from huoyan.server.remote import CommandTimeout, RemoteStation


def report(done: list[CommandDone] | None = None, parts: int = 3) -> LinkReport:
    recipe = Recipe.model_validate({"station": "far-1", "product": "washer", "recipe": "washer-top", "version": "2",
                                    "source": {"type": "replay", "path": "."}, "model": "m.safetensors"})  # fmt: skip
    status = station_status(None, recipe, running=True, error=None, model_version=4)
    return LinkReport(status=status.model_copy(update={"counts": {"OK": parts}}), done=done or [])


def test_a_station_is_shown_as_reported_until_it_falls_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    station = RemoteStation("far-1")
    assert not station.status().running and "not reported yet" in (station.status().error or "")
    station.reported(report())
    assert station.status().running and station.status().counts == {"OK": 3} and station.status().model_version == 4
    monkeypatch.setattr(remote, "STALE_S", 0.05)
    time.sleep(0.1)
    silent = station.status()
    assert not silent.running and silent.error is not None and silent.error.startswith("no report for")
    assert silent.counts == {"OK": 3}  # what it last said is still shown


def test_an_action_waits_for_the_stations_confirmation_and_says_why_it_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "WAIT_S", 0.3)
    station = RemoteStation("far-1")

    async def scenario() -> None:
        pausing = asyncio.ensure_future(station.pause())
        await asyncio.sleep(0.05)
        (command,) = station.reported(report())  # handed over with the answer to the next report
        assert command.action == "pause" and not pausing.done()
        station.reported(report([CommandDone(id=command.id, ok=True)]))
        await pausing  # confirmed
        refusing = asyncio.ensure_future(station.switch_recipe("washer-bottom"))
        await asyncio.sleep(0.05)
        (command,) = station.reported(report())
        assert (command.action, command.recipe) == ("recipe", "washer-bottom")
        station.reported(report([CommandDone(id=command.id, ok=False, error="no recipe 'washer-bottom'")]))
        with pytest.raises(RuntimeError, match="could not do it: no recipe 'washer-bottom'"):
            await refusing
        with pytest.raises(CommandTimeout, match="has not confirmed 'resume'"):
            await station.resume()  # the station is silent
        (late,) = station.reported(report())
        assert late.action == "resume"  # still carried out when it reports again

    asyncio.run(scenario())


def test_a_remote_station_takes_no_uploads_and_keeps_its_evidence() -> None:
    station = RemoteStation("far-1")
    with pytest.raises(TypeError, match="takes parts on its own PC"):
        station.submit(b"", "x.png", None)
    with pytest.raises(FileNotFoundError):
        station.blob("0" * 64)
