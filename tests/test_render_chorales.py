"""scripts/render_chorales.py: the pure parts everywhere; music21 and one short end-to-end render where
the build dependencies are installed (`make build-deps`, Debian fluidsynth + fluid-soundfont-gm).
CI installs them (`.ci/run`), so there a missing one fails these tests instead of skipping them."""

from __future__ import annotations

import builtins
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "render_chorales.py"
_spec = importlib.util.spec_from_file_location("render_chorales", SCRIPT)
render_chorales = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_chorales)

HAS_RENDERER = shutil.which("fluidsynth") is not None and render_chorales.DEFAULT_SOUNDFONT.is_file()


def build_dependency(reason: str, present: bool = True):
    """music21 if `present`; else skip (or fail in CI, where .ci/run installs the build dependencies)."""
    try:
        import music21
    except ImportError:
        music21, present, reason = None, False, "needs music21 (make build-deps)"
    if not present:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs the build dependencies, but this test {reason}", pytrace=False)
        pytest.skip(reason)
    return music21


def test_split_is_deterministic_disjoint_and_80_10_10():
    splits = {split: {i for i in range(1000) if render_chorales.split_for(i) == split}
              for split in ("train", "valid", "test")}
    assert [render_chorales.split_for(i) for i in range(1000)] == [render_chorales.split_for(i) for i in range(1000)]
    assert set().union(*splits.values()) == set(range(1000))
    assert sum(len(s) for s in splits.values()) == 1000  # disjoint
    assert {k: len(v) for k, v in splits.items()} == {"train": 800, "valid": 100, "test": 100}


def test_split_of_a_prefix_is_the_prefix_of_the_split():
    """--limit N renders the same files into the same splits as the full run does."""
    assert [render_chorales.split_for(i) for i in range(10)] == ["train"] * 8 + ["valid", "test"]


def test_program_choice_cycles_and_every_split_gets_every_program():
    programs = [0, 19, 48, 73]
    assert [render_chorales.program_for(i, programs) for i in (0, 9, 10, 25, 39, 40)] == [0, 0, 19, 48, 73, 0]
    for split in ("train", "valid", "test"):
        used = {render_chorales.program_for(i, programs) for i in range(350) if render_chorales.split_for(i) == split}
        assert used == set(programs), split


@pytest.mark.parametrize("programs", [[], [128], [-1], [True]])
def test_program_choice_rejects_bad_programs(programs):
    with pytest.raises(ValueError, match="programs"):
        render_chorales.program_for(0, programs)


def test_repeated_chorales_are_kept_once_in_order():
    assert render_chorales.unique_chorales(["bach/b", "bach/a", "bach/b", "bach/c"]) == ["bach/b", "bach/a", "bach/c"]


def test_output_name_holds_index_bwv_and_program():
    assert render_chorales.output_name(7, "bach/bwv153.1", 19) == "chorale007_bwv153.1_gm019.wav"


def test_trim_silence_cuts_quiet_ends_and_keeps_the_middle():
    tone = np.sin(np.linspace(0, 200, 1000)).astype(np.float32)
    quiet = np.full(300, 1e-4, dtype=np.float32)  # -80 dB: below the -60 dB threshold
    audio = np.concatenate([np.zeros(500, np.float32), quiet, tone, quiet, np.zeros(200, np.float32)])
    trimmed = render_chorales.trim_silence(audio)
    # The tone starts at sample 800 with sin(0) = 0, below the threshold, and ends at sin(200) = -0.87.
    np.testing.assert_array_equal(trimmed, audio[801:1800])


def test_trim_silence_of_silence_is_empty():
    assert render_chorales.trim_silence(np.zeros(100, np.float32)).size == 0
    assert render_chorales.trim_silence(np.zeros(0, np.float32)).size == 0


def test_normalise_peak_sets_the_largest_sample_and_keeps_the_shape_of_the_wave():
    audio = np.array([0.1, -0.3, 0.2], dtype=np.float32)
    out = render_chorales.normalise_peak(audio)
    assert out.dtype == np.float32
    assert np.abs(out).max() == pytest.approx(0.9)
    np.testing.assert_allclose(out, audio * 3, rtol=1e-6)


def test_normalise_peak_of_silence_is_an_error():
    with pytest.raises(ValueError, match="silent"):
        render_chorales.normalise_peak(np.zeros(10, np.float32))


def test_missing_fluidsynth_says_which_package_to_install(monkeypatch):
    monkeypatch.setattr(render_chorales.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install fluidsynth"):
        render_chorales.find_fluidsynth(render_chorales.DEFAULT_SOUNDFONT)


def test_missing_soundfont_says_which_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(render_chorales.shutil, "which", lambda name: "/usr/bin/fluidsynth")
    with pytest.raises(SystemExit, match="apt-get install fluid-soundfont-gm"):
        render_chorales.find_fluidsynth(tmp_path / "missing.sf2")


def test_missing_music21_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def no_music21(name, *args, **kwargs):
        if name == "music21":
            raise ImportError("No module named 'music21'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "music21", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_music21)
    with pytest.raises(SystemExit, match="requirements-build.txt"):
        render_chorales.import_music21()


def test_midi_of_a_chorale_with_a_grace_note_leaves_no_note_on(tmp_path):
    """bwv315 has a grace note, which music21 writes off-before-on: fluidsynth 2.3.1 then rendered it forever."""
    music21 = build_dependency("needs music21")
    path = tmp_path / "score.mid"
    render_chorales.write_midi(music21, music21.corpus.parse("bach/bwv315"), 48, 1.0, path)
    midi_file = music21.midi.MidiFile()
    midi_file.open(str(path))
    midi_file.read()
    midi_file.close()
    for track in midi_file.tracks:
        sounding = set()
        for event in track.events:
            if not event.isDeltaTime() and event.isNoteOn():
                sounding.add((event.channel, event.pitch))
            elif not event.isDeltaTime() and event.isNoteOff():
                assert (event.channel, event.pitch) in sounding, "note-off before its note-on"
                sounding.discard((event.channel, event.pitch))
        assert not sounding
        if any(not e.isDeltaTime() and e.isNoteOn() for e in track.events):
            last = [e for e in track.events if not e.isDeltaTime()][-2]  # the event before end-of-track
            assert (last.parameter1, last.parameter2) == (123, 0)  # all notes off


def test_melody_keeps_only_the_soprano_line():
    music21 = build_dependency("needs music21")
    score = music21.corpus.parse("bach/bwv66.6")
    soprano = [n.pitch.midi for n in score.parts[0].recurse().notes]
    render_chorales.keep_melody(score)
    assert len(score.parts) == 1
    assert [n.pitch.midi for n in score.parts[0].recurse().notes] == soprano
    assert all(not n.isChord for n in score.recurse().notes), "one note at a time"


def test_renders_one_chorale_to_a_tonal_trimmed_normalised_wav_and_skips_it_the_second_time(tmp_path, capsys):
    build_dependency("needs Debian fluidsynth + fluid-soundfont-gm", present=HAS_RENDERER)
    args = ["--out", str(tmp_path), "--limit", "1", "--tempo-scale", "16", "--sample-rate", "8000",
            "--programs", "19"]
    render_chorales.main(args)
    (path,) = (tmp_path / "train").glob("*.wav")
    assert path.name == "chorale000_bwv269_gm019.wav"
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 8000 and audio.ndim == 1
    assert 1.5 < audio.size / rate < 6  # 85 quarter notes at 1920 per minute, plus the release
    assert np.abs(audio).max() == pytest.approx(0.9, abs=1e-3)
    assert np.abs(audio[:8]).max() > 1e-3  # leading silence trimmed
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
    assert np.exp(np.mean(np.log(spectrum + 1e-20))) / np.mean(spectrum) < 0.05  # spectral flatness: tonal, not noise
    source = (tmp_path / "SOURCE.md").read_text()
    assert "| train | 1 |" in source and "--limit 1" in source

    mtime = path.stat().st_mtime_ns
    render_chorales.main(args)
    assert path.stat().st_mtime_ns == mtime
    assert "rendered 0, skipped 1" in capsys.readouterr().out
