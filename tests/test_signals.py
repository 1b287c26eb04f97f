"""Sensor channels: readers, windows, features, defect frequencies, envelope analysis and
the vibration detector's diagnosis, on synthetic signals (``signalkit``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import fft
from scipy.io import savemat, wavfile

from huoyan.signals.bearings import BearingGeometry, bearing
from huoyan.signals.detector import VibrationMonitor
from huoyan.signals.envelope import envelope_spectrum, most_impulsive_band
from huoyan.signals.features import G, iso_zone, time_features, velocity_rms, velocity_spectrum
from huoyan.signals.readers import Recording, SignalError, read_recording
from huoyan.signals.windows import windows
from signalkit import RATE, RESONANCE_HZ, RPM, signal_windows, vibration


# -- defect frequencies ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "orders"),
    [
        # Multiples of shaft speed published by the CWRU Bearing Data Center for its rig
        # (the 6203's BSF worked by hand from its dimensions: 1.122 / 0.5312 (1 - 0.23672^2)).
        ("6205", {"bpfi": 5.4152, "bpfo": 3.5848, "ftf": 0.39828, "bsf": 2.3568}),
        ("SKF 6203-2RS", {"bpfi": 4.9469, "bpfo": 3.0530, "ftf": 0.3817, "bsf": 1.99384}),
    ],
)
def test_defect_frequencies_of_shipped_bearings_match_published_orders(name: str, orders: dict[str, float]) -> None:
    f = bearing(name).frequencies(1797 / 60)
    for key, order in orders.items():
        assert getattr(f, key) / f.shaft == pytest.approx(order, rel=3e-4), key


def test_contact_angle_enters_the_defect_frequencies() -> None:
    # Worked by hand: n=12, d=10, D=50, 30 degrees, 25 Hz: ratio = 0.2 cos 30 = 0.173205
    g = BearingGeometry(rolling_elements=12, element_diameter_mm=10, pitch_diameter_mm=50, contact_angle_deg=30)
    f = g.frequencies(25.0)
    assert f.bpfo == pytest.approx(6 * 25 * (1 - 0.173205), rel=1e-5)
    assert f.bpfi == pytest.approx(6 * 25 * (1 + 0.173205), rel=1e-5)
    assert f.ftf == pytest.approx(12.5 * (1 - 0.173205), rel=1e-5)
    assert f.bsf == pytest.approx(50 * 25 / 20 * (1 - 0.173205**2), rel=1e-5)


def test_an_unknown_bearing_says_how_to_give_one() -> None:
    with pytest.raises(ValueError, match=r"not shipped.*rolling_elements"):
        bearing("6309")


# -- features ----------------------------------------------------------------------------
def test_velocity_rms_of_a_sinusoid_is_its_amplitude_over_root_two() -> None:
    rate, f = 10_000.0, 50.0
    t = np.arange(int(rate)) / rate
    velocity_peak_mm_s = 4.0
    acceleration_g = velocity_peak_mm_s / 1000 * 2 * np.pi * f * np.cos(2 * np.pi * f * t) / G
    v = velocity_spectrum(fft.rfft(acceleration_g), rate, t.size)
    assert velocity_rms(v) == pytest.approx(velocity_peak_mm_s / np.sqrt(2), rel=1e-3)


def test_iso_zones_follow_the_class_boundaries() -> None:
    assert [iso_zone(v, "I") for v in (0.5, 1.0, 3.0, 5.0)] == ["A", "B", "C", "D"]
    assert iso_zone(3.0, "group1-rigid") == "B"
    with pytest.raises(ValueError, match="machine class 'V' unknown"):
        iso_zone(1.0, "V")


def test_impacts_raise_kurtosis_and_crest_factor() -> None:
    healthy = time_features(vibration(1.0, None, 1))
    faulty = time_features(vibration(1.0, "outer_race", 1))
    assert healthy[3] == pytest.approx(3.0, abs=0.3)  # Gaussian
    assert faulty[3] > 5 and faulty[2] > healthy[2]


def test_the_kurtogram_finds_the_band_the_impacts_ring() -> None:
    x = vibration(1.0, "outer_race", 2)
    spectrum = fft.rfft(x)
    low, high, sk = most_impulsive_band(spectrum, RATE, 500.0, 0.01)
    step = RATE / x.size
    assert low * step <= RESONANCE_HZ <= high * step and sk > 1
    env = envelope_spectrum(spectrum, RATE, x.size)
    bpfo = bearing("6205").frequencies(RPM / 60).bpfo
    top = env.frequencies[1:][np.argmax(env.amplitudes[1:])]
    assert min(abs(top - h * bpfo) for h in (1, 2, 3)) <= 2.0  # the highest line is a harmonic of BPFO


def test_a_silent_window_has_no_impulsive_band() -> None:
    band = most_impulsive_band(fft.rfft(np.zeros(1000)), RATE, 500.0, 0.01)
    assert band == (0, 500, 0.0)  # the whole spectrum, SK 0


# -- readers -------------------------------------------------------------------------------
def test_a_cwru_style_mat_file_gives_its_channel_and_speed(tmp_path: Path) -> None:
    path = tmp_path / "97.mat"
    de, fe = np.arange(100.0)[:, None], -np.arange(100.0)[:, None]
    savemat(path, {"X097_DE_time": de, "X097_FE_time": fe, "X097RPM": np.array([[1796]], np.uint16)})
    rec = read_recording(path, "FE", 48_000)
    assert rec.channel == "FE" and rec.rpm == 1796 and rec.samples[5] == -5 and rec.sample_rate == 48_000
    assert read_recording(path, "X097_DE_time", 48_000, rpm=1750).rpm == 1750
    with pytest.raises(SignalError, match=r"no channel 'BA' \(its series: X097_DE_time, X097_FE_time\)"):
        read_recording(path, "BA", 48_000)
    with pytest.raises(SignalError, match="several channels; name one"):
        read_recording(path, None, 48_000)
    with pytest.raises(SignalError, match="records no sample rate; give it"):
        read_recording(path, "DE")


def test_a_wav_file_gives_its_rate_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    wavfile.write(path, 8000, (np.sin(np.arange(800) / 5) * 10000).astype(np.int16))
    rec = read_recording(path)
    assert rec.sample_rate == 8000 and rec.samples.max() == pytest.approx(10000 / 32768, rel=1e-3)
    with pytest.raises(SignalError, match="recorded at 8000 Hz, but 48000 Hz was expected"):
        read_recording(path, sample_rate=48_000)


def test_a_csv_with_a_time_column_gives_its_rate(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    t = np.arange(200) / 1000
    path.write_text("time,acc_x,acc_y\n" + "\n".join(f"{a},{np.sin(a)},{np.cos(a)}" for a in t))
    rec = read_recording(path, "acc_y")
    assert rec.sample_rate == pytest.approx(1000) and rec.samples[0] == pytest.approx(1.0)
    with pytest.raises(SignalError, match="columns acc_x, acc_y; name one"):
        read_recording(path)
    gap = tmp_path / "gap.csv"
    gap.write_text("time,acc\n0,1\n0.001,1\n0.002,1\n0.004,1\n")
    with pytest.raises(SignalError, match="not evenly spaced"):
        read_recording(gap)


def test_non_finite_samples_and_bad_files_are_named(tmp_path: Path) -> None:
    x = np.ones(1000)
    x[500] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(SignalError, match=r"1 non-finite samples .* the first at 0.05 s"):
        read_recording(tmp_path / "nan.npy", sample_rate=10_000)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(SignalError, match=r"junk\.mat: unreadable \.mat file"):
        read_recording(tmp_path / "junk.mat", "DE", 1000)
    with pytest.raises(SignalError, match="not a recording"):
        read_recording(tmp_path / "a.txt")
    with pytest.raises(SignalError, match="no such file"):
        read_recording(tmp_path / "missing.npy", sample_rate=1000)


def test_windows_cover_the_recording_and_a_short_one_is_an_error() -> None:
    rec = Recording(np.zeros(1000), 1000.0, "0", "r")
    got = list(windows(rec, 0.2, 0.1))
    assert [w.start_s for w in got] == pytest.approx([0.1 * i for i in range(9)])
    assert all(w.samples.size == 200 for w in got)
    with pytest.raises(SignalError, match="shorter than one 2 s window"):
        list(windows(rec, 2.0))


# -- the detector ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def monitor() -> VibrationMonitor:
    return VibrationMonitor(window_s=0.25, hop_s=0.125, bearing="6205", rpm=RPM).fit(signal_windows(3.0, None, 0))


@pytest.mark.parametrize("fault", ["outer_race", "inner_race", "unbalance"])
def test_a_fault_is_ng_and_diagnosed_as_its_family(monitor: VibrationMonitor, fault: str) -> None:
    scores = monitor.score(signal_windows(1.5, fault, 7))
    assert (scores.raw > monitor.threshold).all()
    assert {c.diagnosis.family for c in scores.evidence} == {fault}
    evidence = {e.family: e for e in scores.evidence[0].diagnosis.evidence}
    assert evidence[fault].rise_db is not None and evidence[fault].rise_db >= 6


def test_healthy_running_is_ok_and_not_diagnosed(monitor: VibrationMonitor) -> None:
    scores = monitor.score(signal_windows(3.0, None, 11))
    assert (scores.raw <= monitor.threshold).mean() >= 0.9
    assert {c.diagnosis.family for c in scores.evidence} == {None}


def test_the_evidence_names_the_lines_at_the_defect_frequencies(monitor: VibrationMonitor) -> None:
    condition = monitor.score(signal_windows(0.5, "outer_race", 3)[:1]).evidence[0]
    outer = next(e for e in condition.diagnosis.evidence if e.family == "outer_race")
    first = outer.lines[0]
    bpfo = bearing("6205").frequencies(RPM / 60).bpfo
    assert first.name == "1x BPFO" and first.expected_hz == pytest.approx(bpfo)
    assert abs(first.found_hz - bpfo) <= 0.02 * bpfo + 4 and first.prominence_db > 10
    assert condition.iso_zone in "ABCD" and condition.band_hz is not None


def test_windows_of_another_rate_or_length_are_refused(monitor: VibrationMonitor) -> None:
    w = signal_windows(1.0)[0]
    from dataclasses import replace

    with pytest.raises(ValueError, match="expected 20000 Hz, got 10000 Hz"):
        monitor.score([replace(w, sample_rate=10_000.0)])
    with pytest.raises(ValueError, match=r"expected 5000 samples \(0.25 s\), got 4000"):
        monitor.score([replace(w, samples=w.samples[:4000])])


def test_too_little_healthy_running_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 6 healthy windows are needed, got 3"):
        VibrationMonitor(window_s=0.25, hop_s=0.25).fit(signal_windows(0.75, hop=0.25))


def test_the_threshold_holds_its_false_alarm_rate_on_new_healthy_running() -> None:
    """Many healthy recordings, none seen in fitting: the share of false alarms stays
    near the target (10 %), the cross-fitted calibration erring on the safe side."""
    model = VibrationMonitor(window_s=0.25, hop_s=0.125, bearing="6205", rpm=RPM, false_reject_rate=0.1)
    model.fit(signal_windows(6.0, None, 21))
    new = np.concatenate([model.score(signal_windows(2.0, None, seed)).raw for seed in range(30, 40)])
    assert (new > model.threshold).mean() <= 0.15
