"""Reading recorded time series: CWRU-style MATLAB ``.mat``, ``.wav``, ``.csv`` and ``.npy``.

Every reader gives a ``Recording``: one channel as float64, its sample rate, and the
shaft speed where the file records it (CWRU's ``X097RPM``). The rate comes from the
file where it holds one (a WAV header, a CSV ``time`` column) and must then agree
with the rate given; ``.mat`` and ``.npy`` files hold none, so it must be given. A
file without the named channel, a disagreeing rate, a non-finite sample or an
unreadable file is a ``SignalError`` that names the file and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIGNAL_SUFFIXES = frozenset({".mat", ".wav", ".csv", ".npy"})
RATE_TOLERANCE = 1e-3  # relative disagreement between a given and a recorded rate that is accepted


class SignalError(ValueError):
    """A recording cannot be read as asked; the message names the file and the reason."""


class MissingChannel(SignalError):
    """The file has no channel of the name asked for."""


@dataclass(frozen=True, slots=True)
class Recording:
    """One channel of a recorded time series."""

    samples: np.ndarray  # float64, 1-D
    sample_rate: float  # Hz
    channel: str
    source: str  # where it came from (the path)
    rpm: float | None = None  # shaft speed recorded with it, if any

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


def read_recording(
    path: str | Path,
    channel: str | None = None,
    sample_rate: float | None = None,
    rpm: float | None = None,
    usual_channel: str | None = None,
) -> Recording:
    """Read one channel of ``path``. ``channel``: for ``.mat`` a name such as ``DE``
    (variable ``X097_DE_time``) or a variable's full name; for ``.csv`` a column; for
    ``.wav`` and 2-D ``.npy`` a column index. Without one, ``usual_channel`` (a
    model's: the channel it was fitted on) where the file has it, else its only
    channel. ``rpm`` overrides a speed in the file."""
    if channel is None and usual_channel:
        try:
            return read_recording(path, usual_channel, sample_rate, rpm)
        except MissingChannel:
            pass
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SIGNAL_SUFFIXES:
        raise SignalError(f"{p}: not a recording ({', '.join(sorted(SIGNAL_SUFFIXES))})")
    if not p.is_file():
        raise SignalError(f"{p}: no such file")
    if sample_rate is not None and not sample_rate > 0:
        raise SignalError(f"{p}: sample rate must be positive, got {sample_rate}")
    try:
        if suffix == ".mat":
            samples, name, file_rate, file_rpm = _read_mat(p, channel)
        elif suffix == ".wav":
            samples, name, file_rate, file_rpm = _read_wav(p, channel)
        elif suffix == ".csv":
            samples, name, file_rate, file_rpm = _read_csv(p, channel)
        else:
            samples, name, file_rate, file_rpm = _read_npy(p, channel)
    except SignalError:
        raise
    except (OSError, ValueError, KeyError, IndexError, NotImplementedError) as exc:
        raise SignalError(f"{p}: unreadable {suffix} file ({exc})") from exc
    rate = _agreed_rate(p, file_rate, sample_rate)
    samples = np.asarray(samples, dtype=np.float64).ravel()
    if samples.size < 2:
        raise SignalError(f"{p}: channel {name!r} holds {samples.size} samples")
    bad = ~np.isfinite(samples)
    if bad.any():
        first = int(np.argmax(bad))
        raise SignalError(
            f"{p}: channel {name!r} has {int(bad.sum())} non-finite samples (NaN or inf), the first at "
            f"{first / rate:.6g} s"
        )
    speed = rpm if rpm is not None else file_rpm
    if speed is not None and not speed > 0:
        raise SignalError(f"{p}: shaft speed must be positive, got {speed} rpm")
    return Recording(np.ascontiguousarray(samples), rate, name, str(p), speed)


def _agreed_rate(p: Path, recorded: float | None, given: float | None) -> float:
    if recorded is None and given is None:
        raise SignalError(f"{p}: the file records no sample rate; give it (--sample-rate, or the recipe's)")
    if recorded is not None and given is not None and abs(recorded - given) > RATE_TOLERANCE * given:
        raise SignalError(f"{p}: recorded at {recorded:g} Hz, but {given:g} Hz was expected")
    return float(given if given is not None else recorded)  # type: ignore[arg-type]


def _read_mat(p: Path, channel: str | None) -> tuple[np.ndarray, str, None, float | None]:
    from scipy.io import loadmat

    data = {k: v for k, v in loadmat(str(p)).items() if not k.startswith("__")}
    series = {k: v for k, v in data.items() if isinstance(v, np.ndarray) and v.size > 1 and v.dtype.kind in "fiu"}
    if channel is not None and channel in series:
        key = channel
    else:
        wanted = channel or ""
        matching = [k for k in series if re.fullmatch(rf"X?\d*_?{re.escape(wanted)}_time", k)] if wanted else []
        if not wanted:
            matching = list(series)
        if len(matching) != 1:
            available = ", ".join(sorted(series)) or "none"
            what = f"no channel {channel!r}" if channel else "several channels; name one"
            raise MissingChannel(f"{p}: {what} (its series: {available})")
        key = matching[0]
    rpm = None
    for k, v in data.items():
        if k.upper().endswith("RPM") and isinstance(v, np.ndarray) and v.size >= 1:
            rpm = float(np.ravel(v)[0])
            break
    name = key.split("_")[-2] if re.fullmatch(r"X\d+_\w+_time", key) else key
    return series[key], name, None, rpm


def _read_wav(p: Path, channel: str | None) -> tuple[np.ndarray, str, float, None]:
    from scipy.io import wavfile

    rate, data = wavfile.read(str(p))
    scale = {"int16": 2**15, "int32": 2**31, "uint8": 2**7}.get(str(data.dtype))
    samples = data.astype(np.float64)
    if data.dtype == np.uint8:
        samples -= 128
    if scale:
        samples /= scale  # full scale = 1, as float WAV files hold it
    return (*_column(p, samples, channel), float(rate), None)


def _column(p: Path, samples: np.ndarray, channel: str | None) -> tuple[np.ndarray, str]:
    if samples.ndim == 1:
        if channel not in (None, "0"):
            raise MissingChannel(f"{p}: no channel {channel!r} (the file has one channel, 0)")
        return samples, "0"
    if samples.ndim != 2:
        raise SignalError(f"{p}: expected samples or samples x channels, got shape {samples.shape}")
    count = samples.shape[1]
    if channel is None:
        if count != 1:
            raise SignalError(f"{p}: {count} channels (0-{count - 1}); name one")
        return samples[:, 0], "0"
    if not channel.isdigit() or int(channel) >= count:
        raise MissingChannel(f"{p}: no channel {channel!r} (the file has channels 0-{count - 1})")
    return samples[:, int(channel)], channel


def _read_npy(p: Path, channel: str | None) -> tuple[np.ndarray, str, None, None]:
    samples = np.load(str(p), allow_pickle=False)
    if samples.dtype.kind not in "fiu":
        raise SignalError(f"{p}: expected numbers, got {samples.dtype}")
    return (*_column(p, samples, channel), None, None)


def _read_csv(p: Path, channel: str | None) -> tuple[np.ndarray, str, float | None, None]:
    with p.open(encoding="utf-8-sig") as f:
        header = f.readline().strip()
    names = [h.strip() for h in header.split(",")]
    has_header = any(not _is_number(n) for n in names)
    table = np.loadtxt(str(p), delimiter=",", skiprows=1 if has_header else 0, ndmin=2, dtype=np.float64)
    if not has_header:
        names = [str(i) for i in range(table.shape[1])]
    if table.shape[1] != len(names):
        raise SignalError(f"{p}: {len(names)} column names but {table.shape[1]} columns")
    columns = dict(zip(names, table.T, strict=True))
    time = next((columns.pop(n) for n in list(columns) if n.lower() in ("time", "t", "time_s", "seconds")), None)
    rate = None
    if time is not None:
        steps = np.diff(time)
        if steps.size == 0 or not np.all(steps > 0):
            raise SignalError(f"{p}: the time column must increase")
        step = float(np.median(steps))
        if np.max(np.abs(steps - step)) > 0.01 * step:
            raise SignalError(f"{p}: the time column is not evenly spaced (a gap or a jitter over 1 %)")
        rate = 1.0 / step
    if channel is None:
        if len(columns) != 1:
            raise SignalError(f"{p}: columns {', '.join(columns)}; name one")
        channel = next(iter(columns))
    if channel not in columns:
        raise MissingChannel(f"{p}: no channel {channel!r} (its columns: {', '.join(columns)})")
    return columns[channel], channel, rate, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def list_recordings(inputs: list[str | Path]) -> list[Path]:
    """Files and folders to the recordings in them (folders sorted, not recursive into hidden)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in SIGNAL_SUFFIXES and f.is_file())
        else:
            out.append(p)
    return out
