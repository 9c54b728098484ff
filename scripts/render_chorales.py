"""Render the Bach chorales of music21's corpus to an audio folder, the training data of the bundled chorale WaveNet.

    python scripts/render_chorales.py [--out data/chorales] [--sample-rate 16000] [--limit N]
        [--programs 0 19 48 73] [--tempo-scale 1.0] [--gain 0.3] [--soundfont PATH] [--melody]

Needs what `requirements-build.txt` lists (music21) and Debian's `fluidsynth` and
`fluid-soundfont-gm`. For each distinct chorale of `music21.corpus.chorales.Iterator()`
(Riemenschneider order; a harmonisation listed twice is rendered once, so it cannot land
in two splits), in order, with index i counted from 0:

1. music21 writes a MIDI file (repeats expanded where they pair up, grace notes left out; with
   `--melody` only the first part, the soprano's tune, is kept) with every part playing the
   General MIDI program `program_for(i, programs)`, at 120 quarter notes per minute times
   `--tempo-scale`;
2. fluidsynth renders it to a WAV at 44.1 kHz (re-rendered at half the gain if it clipped);
3. `core.audio.read_audio` mixes it to mono and resamples it to `--sample-rate` (soxr);
   silence more than 60 dB below the peak is trimmed from both ends, the peak is set to
   0.9, and `core.audio.write_wav` writes `OUT/{split}/chorale{i:03d}_{bwv}_gm{program:03d}.wav`
   (16-bit PCM), with `split_for(i)` giving an 80/10/10 train/valid/test split.

Files that already exist are skipped, so an interrupted run picks up where it stopped.
`OUT/SOURCE.md` records the command, the versions and the counts and durations per split.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile as sf
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import read_audio, write_wav  # noqa: E402
from core.data.registry import SPLITS  # noqa: E402

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
# 0 acoustic grand piano, 19 church organ, 48 string ensemble 1, 73 flute.
DEFAULT_PROGRAMS: tuple[int, ...] = (0, 19, 48, 73)
RENDER_RATE = 44100  # fluidsynth renders at the soundfont's rate; soxr then low-passes and resamples
# Every chorale is played at BASE_QPM x --tempo-scale quarter notes per minute: music21's default tempo. The
# few editorial marks in the corpus (8 of 350 chorales, 88 to 96 sounding) are replaced, for a uniform data set.
BASE_QPM = 120.0
SILENCE_DB = -60.0
PEAK = 0.9
MAX_GAIN_HALVINGS = 4
FLUIDSYNTH_TIMEOUT_S = 300  # a chorale renders in seconds; this only stops a render that never ends
BUILD_REQUIREMENTS = "pip install -r requirements-build.txt"


def split_for(index: int) -> str:
    """The split of chorale `index`: 'valid' if index % 10 == 8, 'test' if index % 10 == 9, else 'train' (80/10/10).

    It depends on the index alone, so `--limit` renders a prefix of the full data set and
    every split is spread over the whole corpus.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    return {8: "valid", 9: "test"}.get(index % 10, "train")


def program_for(index: int, programs: Sequence[int]) -> int:
    """The General MIDI program of chorale `index`: programs[(index // 10) % len(programs)].

    Programs change every ten chorales, a whole split cycle, so each split gets every program
    in the same proportion (cycling index % len(programs) would give 'valid', i % 10 == 8,
    only the even-numbered programs of four).
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    if not programs:
        raise ValueError("programs must not be empty")
    for program in programs:
        if isinstance(program, bool) or not isinstance(program, int) or not 0 <= program <= 127:
            raise ValueError(f"programs must be General MIDI programs, ints in [0, 127], got {program!r}")
    return programs[(index // 10) % len(programs)]


def unique_chorales(names: Sequence[str]) -> list[str]:
    """`names` without repeats, first occurrence kept, in order (the Riemenschneider list repeats 21 chorales)."""
    return list(dict.fromkeys(names))


def output_name(index: int, name: str, program: int) -> str:
    """File name of chorale `index` ('bach/bwv269') rendered with `program`: 'chorale000_bwv269_gm019.wav'."""
    return f"chorale{index:03d}_{Path(name).name}_gm{program:03d}.wav"


def trim_silence(audio: np.ndarray, threshold_db: float = SILENCE_DB) -> np.ndarray:
    """`audio` (T,) from its first to its last sample louder than `threshold_db` relative to its peak.

    Returns an empty array when `audio` is empty or silent (all zeros).
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must have shape (T,), got {audio.shape}")
    if not threshold_db < 0:
        raise ValueError(f"threshold_db must be negative, got {threshold_db!r}")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak == 0.0:
        return audio[:0]
    loud = np.flatnonzero(np.abs(audio) > peak * 10.0 ** (threshold_db / 20.0))
    return audio[loud[0] : loud[-1] + 1]


def normalise_peak(audio: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """`audio` scaled so that its largest absolute sample is `peak`, as float32. ValueError if it is silent."""
    audio = np.asarray(audio)
    if not 0 < peak <= 1:
        raise ValueError(f"peak must be in (0, 1], got {peak!r}")
    current = float(np.abs(audio).max()) if audio.size else 0.0
    if current == 0.0:
        raise ValueError("audio is silent: there is no peak to normalise")
    return (audio * (peak / current)).astype(np.float32)


def import_music21() -> ModuleType:
    """The music21 module, or SystemExit saying how to install it."""
    try:
        import music21
    except ImportError as e:
        raise SystemExit(f"music21 is not installed; it renders the chorales' scores to MIDI. "
                         f"Install it with `{BUILD_REQUIREMENTS}`.") from e
    return music21


def find_fluidsynth(soundfont: Path) -> str:
    """The path of the fluidsynth program; SystemExit naming the Debian package if it or `soundfont` is missing."""
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        raise SystemExit("fluidsynth is not installed; it renders MIDI to audio. "
                         "Install it with `apt-get install fluidsynth` (Debian/Ubuntu).")
    if not soundfont.is_file():
        raise SystemExit(f"no soundfont at {str(soundfont)!r}. Install the General MIDI soundfont with "
                         "`apt-get install fluid-soundfont-gm` (Debian/Ubuntu), or pass --soundfont PATH.")
    return fluidsynth


def write_midi(music21: ModuleType, score, program: int, tempo_scale: float, path: Path) -> None:
    """Write music21 `score` to the MIDI file `path`: every part plays `program`, BASE_QPM x `tempo_scale`."""
    instrument, tempo = music21.instrument, music21.tempo
    for part in score.parts:
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        new = instrument.instrumentFromMidiProgram(program)
        new.midiProgram = program
        part.insert(0, new)
    for mark in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
        mark.activeSite.remove(mark)
    # music21 writes a grace note's note-off before its note-on (same tick): the note would sound until the
    # same key is played again. The chorales' few grace notes are ornaments; they are left out.
    for note in list(score.recurse().notes):
        if note.duration.isGrace:
            note.activeSite.remove(note)
    score.parts[0].insert(0, tempo.MetronomeMark(number=BASE_QPM * tempo_scale, referent=1.0))
    try:
        midi_file = music21.midi.translate.streamToMidiFile(score)  # expands repeats
    except music21.repeat.ExpanderException:  # repeats that do not pair up (bwv277): play the score as written
        for measure in score.recurse().getElementsByClass(music21.stream.Measure):
            if isinstance(measure.leftBarline, music21.bar.Repeat):
                measure.leftBarline = None
            if isinstance(measure.rightBarline, music21.bar.Repeat):
                measure.rightBarline = music21.bar.Barline("regular")
        midi_file = music21.midi.translate.streamToMidiFile(score)
    _end_with_all_notes_off(music21.midi, midi_file)
    midi_file.open(str(path), "wb")
    try:
        midi_file.write()
    finally:
        midi_file.close()


def _end_with_all_notes_off(midi: ModuleType, midi_file) -> None:
    """Release every note at the last event of each track (controller 123, all notes off).

    fluidsynth 2.3.1 (Debian 12) renders until every voice has ended, so one note left on would
    make it write audio forever (FluidSynth issue #1257).
    """
    for track in midi_file.tracks:
        channels = sorted({e.channel for e in track.events if not e.isDeltaTime() and e.isNoteOn()})
        events = []
        for channel in channels:
            all_notes_off = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel)
            all_notes_off.parameter1, all_notes_off.parameter2 = 123, 0
            events += [midi.DeltaTime(track, time=0), all_notes_off]
        track.events[-2:-2] = events  # before the last (delta time, end of track) pair
        track.updateEvents()


def render_midi(fluidsynth: str, soundfont: Path, midi: Path, wav: Path, gain: float) -> None:
    """Render `midi` to the 16-bit WAV `wav` at RENDER_RATE; halve `gain` until it does not clip."""
    for _ in range(MAX_GAIN_HALVINGS + 1):
        command = [fluidsynth, "-ni", "-q", "-F", str(wav), "-T", "wav", "-O", "s16",
                   "-r", str(RENDER_RATE), "-g", f"{gain:g}", str(soundfont), str(midi)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT_S)
        if done.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"{shlex.join(command)} failed (exit status {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()}")
        pcm = sf.read(wav, dtype="int16")[0].astype(np.int32)
        if pcm.size and np.abs(pcm).max() < 32767:
            return
        gain /= 2
    raise RuntimeError(f"fluidsynth output of {midi.name} clips (or is empty) even at gain {gain * 2:g}")


def keep_melody(score) -> None:
    """Remove every part of the music21 `score` but the first (in the chorales, the soprano's tune)."""
    for part in list(score.parts)[1:]:
        score.remove(part)


def render_chorale(music21: ModuleType, score, program: int, tempo_scale: float, sample_rate: int,
                   fluidsynth: str, soundfont: Path, gain: float, melody: bool = False) -> np.ndarray:
    """Music21 `score` rendered with General MIDI `program`: float32 mono (T,) at `sample_rate`, trimmed, peak 0.9.

    melody: keep only the first part (the soprano), so every moment is a single periodic note.
    """
    if melody:
        keep_melody(score)
    with tempfile.TemporaryDirectory(prefix="chorale-") as tmp:
        midi, wav = Path(tmp) / "score.mid", Path(tmp) / "render.wav"
        write_midi(music21, score, program, tempo_scale, midi)
        render_midi(fluidsynth, soundfont, midi, wav, gain)
        audio = read_audio(wav, sample_rate, max_seconds=3600.0, max_bytes=2**31 - 1)
    audio = trim_silence(audio)
    if audio.size == 0:
        raise RuntimeError("fluidsynth rendered silence")
    return normalise_peak(audio)


def summarise(out: Path) -> dict[str, tuple[int, float]]:
    """{split: (number of WAV files, total seconds)} for the audio folder `out`."""
    summary = {}
    for split in SPLITS:
        files = sorted((out / split).glob("*.wav"))
        summary[split] = (len(files), sum(sf.info(f).duration for f in files))
    return summary


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds / 60:.1f} min)"


def write_source(out: Path, command: str, args: argparse.Namespace, music21_version: str, fluidsynth: str,
                 run: str, failed: list[str]) -> None:
    """Write `out/SOURCE.md`: how the folder was made, and its counts and durations per split."""
    version = subprocess.run([fluidsynth, "--version"], capture_output=True, text=True).stdout.splitlines()
    programs = Counter(p.stem.rsplit("_gm", 1)[-1] for p in out.glob("*/*.wav"))
    rows = "\n".join(f"| {split} | {n} | {_hours(seconds)} |" for split, (n, seconds) in summarise(out).items())
    failures = "".join(f"\n- {name}" for name in failed) or " none."
    text = f"""# Bach chorales rendered with FluidSynth

Training audio for the bundled chorale WaveNet: tonal, four-part music played by one
instrument at a time. Not committed (`data/` is in .gitignore); rebuild it with

    {command}

- Scores: the distinct Bach chorales of the music21 {music21_version} corpus
  (`music21.corpus.chorales.Iterator()`, Riemenschneider order; a harmonisation the list
  repeats is rendered once). Chorale i (from 0) is `chorale{{i:03d}}_{{bwv}}_gm{{program:03d}}.wav`.
- MIDI: written by music21 with repeats expanded (played as written where they do not pair
  up) and grace notes left out; {'only the first part (the soprano melody)' if args.melody else 'every part'}
  plays one General MIDI program, programs
  {list(args.programs)} in turn, changing every ten chorales; {BASE_QPM:g} quarter notes per minute
  x tempo scale {args.tempo_scale:g}.
- Audio: {version[0] if version else 'fluidsynth'} with the soundfont {args.soundfont}
  (Debian fluid-soundfont-gm), rendered at {RENDER_RATE} Hz with gain {args.gain:g} (halved if it clipped),
  mixed to mono and resampled to {args.sample_rate} Hz (soxr HQ), silence {-SILENCE_DB:g} dB below
  the peak trimmed from both ends, peak normalised to {PEAK:g}, 16-bit PCM WAV.
- Split by chorale index: i % 10 == 8 valid, i % 10 == 9 test, otherwise train (80/10/10).

| split | files | duration |
|---|---|---|
{rows}

Files per General MIDI program: {dict(sorted(programs.items()))}.

Last run: {run}. Chorales that failed to render:{failures}
"""
    (out / "SOURCE.md").write_text(text)


def _program(text: str) -> int:
    program = int(text)
    if not 0 <= program <= 127:
        raise argparse.ArgumentTypeError(f"a General MIDI program is in [0, 127], got {program}")
    return program


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render music21's Bach chorales with fluidsynth to an audio folder OUT/{train,valid,test}/*.wav. "
                    "Needs `pip install -r requirements-build.txt` and "
                    "`apt-get install fluidsynth fluid-soundfont-gm`.")
    parser.add_argument("--out", type=Path, default=Path("data/chorales"), help="audio folder to write")
    parser.add_argument("--sample-rate", type=_positive(int), default=16000, help="sample rate of the WAVs, Hz")
    parser.add_argument("--limit", type=_positive(int), default=None,
                        help="render only the first N chorales (default: all)")
    parser.add_argument("--programs", type=_program, nargs="+", default=list(DEFAULT_PROGRAMS),
                        help="General MIDI programs, one per chorale in turn (default: 0 piano, 19 church organ, "
                             "48 string ensemble, 73 flute)")
    parser.add_argument("--tempo-scale", type=_positive(float), default=1.0,
                        help=f"tempo multiplier: 1 plays {BASE_QPM:g} quarter notes per minute, 0.5 half as fast")
    parser.add_argument("--gain", type=_positive(float), default=0.3, help="fluidsynth gain (halved if it clips)")
    parser.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT, help="General MIDI .sf2 soundfont")
    parser.add_argument("--melody", action="store_true", help="render only each chorale's soprano line")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    music21 = import_music21()
    fluidsynth = find_fluidsynth(args.soundfont)
    names = unique_chorales(list(music21.corpus.chorales.Iterator(returnType="filename")))[: args.limit]

    start = time.perf_counter()
    rendered, skipped, failed = 0, 0, []
    progress = tqdm(list(enumerate(names)), unit="chorale", desc="chorales")
    for index, name in progress:
        program = program_for(index, args.programs)
        path = args.out / split_for(index) / output_name(index, name, program)
        if path.exists():
            skipped += 1
            continue
        try:
            audio = render_chorale(music21, music21.corpus.parse(name), program, args.tempo_scale, args.sample_rate,
                                   fluidsynth, args.soundfont, args.gain, args.melody)
        except Exception as e:  # one bad score must not cost the whole run; it is listed in SOURCE.md
            tqdm.write(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(f"{name}: {type(e).__name__}: {e}")
            continue
        write_wav(path, audio, args.sample_rate)
        rendered += 1
        progress.set_postfix(rendered=rendered, skipped=skipped, failed=len(failed))

    run = f"rendered {rendered}, skipped {skipped} that existed, failed {len(failed)}, " \
          f"in {time.perf_counter() - start:.0f} s"
    command = shlex.join(["python", "scripts/render_chorales.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.mkdir(parents=True, exist_ok=True)
    write_source(args.out, command, args, music21.__version__, fluidsynth, run, failed)
    print(f"{run}; see {args.out / 'SOURCE.md'}")
    if failed:
        raise SystemExit(f"{len(failed)} chorale(s) failed to render; see {args.out / 'SOURCE.md'}")


if __name__ == "__main__":
    main()
