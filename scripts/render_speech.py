"""Render a speech corpus with Festival and eSpeak NG to an audio folder, the training data of the speech WaveNet.

    python scripts/render_speech.py [--out data/speech16k] [--train 3600] [--valid 300] [--test 300]
        [--seed 0] [--voices ID ...] [--sample-rate 16000]
    python scripts/render_speech.py --sentence "Hello there." --voice fest-slt --out hello.wav

Needs Debian's `festival`, `festvox-kallpc16k`, `festvox-us-slt-hts` and `espeak-ng`.

1. Text: `scripts/speech_text.make_sentences` builds train + valid + test distinct English
   sentences from its own word lists (seed `--seed`); the first `--train` go to train, the next
   `--valid` to valid, the rest to test, so no sentence is in two splits.
2. Voices: every voice setting of VOICES (or of `--voices`) belongs to one split. Sentence j of a
   split is spoken by one voice of that split, drawn with the voices' weights by a generator seeded
   with (seed, split, j): valid and test speakers are never heard in training.
3. Audio: the engine writes a WAV (Festival: kal 16 kHz, slt 32 kHz; eSpeak NG 22.05 kHz);
   `core.audio.read_audio` resamples it to `--sample-rate` (soxr HQ); everything quieter than
   -50 dB re the peak is trimmed from both ends, keeping PAUSE_S of what was there (zeros where the
   engine left less); the level is set to RMS TARGET_RMS (about -20 dBFS) unless that would put the
   peak over PEAK_LIMIT; `core.audio.write_wav` writes OUT/{split}/s{j:05d}_{voice}.wav (16-bit PCM).

Files that already exist are skipped. OUT/transcripts.tsv lists split, file, voice and sentence;
OUT/SOURCE.md records the command, the versions, the voices and the hours per split.
"""

from __future__ import annotations

import argparse
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import read_audio, write_wav  # noqa: E402
from core.data.registry import SPLITS  # noqa: E402
from core.errors import StudioError  # noqa: E402
from scripts.speech_text import make_sentences  # noqa: E402

SILENCE_DB = -50.0
PAUSE_S = 0.15
TARGET_RMS = 0.1
PEAK_LIMIT = 0.95
ENGINE_TIMEOUT_S = 60  # per sentence; only stops an engine that never ends
BATCH = 50  # sentences per Festival process
APT = "apt-get install festival festvox-kallpc16k festvox-us-slt-hts espeak-ng"


@dataclass(frozen=True)
class Voice:
    """One voice setting. Festival: `name` is the voice function, `f0` the kal diphone voice's mean pitch in Hz
    (None: the voice's own), `speed` a duration factor (>1 slower). eSpeak NG: `name` is 'language+variant',
    `speed` words per minute, `f0` the pitch setting 0..99."""

    id: str
    engine: str  # "festival" or "espeak"
    name: str
    split: str
    speed: float = 1.0
    f0: int | None = None
    weight: int = 1


VOICES: tuple[Voice, ...] = (
    Voice("fest-kal", "festival", "kal_diphone", "train", weight=3),
    Voice("fest-kal-high-slow", "festival", "kal_diphone", "train", speed=1.15, f0=135, weight=2),
    Voice("fest-kal-low-fast", "festival", "kal_diphone", "train", speed=0.9, f0=88, weight=2),
    Voice("fest-slt", "festival", "cmu_us_slt_arctic_hts", "train", weight=5),
    Voice("es-us-m1", "espeak", "en-us+m1", "train", 175, 50),
    Voice("es-us-f2", "espeak", "en-us+f2", "train", 160, 62),
    Voice("es-gb-m3", "espeak", "en-gb+m3", "train", 150, 40),
    Voice("es-gb-f4", "espeak", "en-gb+f4", "train", 180, 66),
    Voice("es-rp-m2", "espeak", "en-gb-x-rp+m2", "train", 165, 45),
    Voice("es-nyc-f1", "espeak", "en-us-nyc+f1", "train", 170, 56),
    Voice("es-029-m4", "espeak", "en-029+m4", "train", 155, 36),
    Voice("es-lancs-f5", "espeak", "en-gb-x-gbclan+f5", "train", 175, 70),
    Voice("es-scot-m6", "espeak", "en-gb-scotland+m6", "train", 160, 46),
    Voice("es-us-klatt", "espeak", "en-us+klatt", "train", 165, 50),
    Voice("es-gb-klatt3", "espeak", "en-gb+klatt3", "train", 150, 55),
    Voice("es-us-belinda", "espeak", "en-us+belinda", "train", 170, 60),
    Voice("es-wmid-m7", "espeak", "en-gb-x-gbcwmd+m7", "valid", 165, 44),
    Voice("es-us-steph", "espeak", "en-us+steph", "valid", 165, 64),
    Voice("es-us-m5", "espeak", "en-us+m5", "test", 155, 42),
    Voice("es-rp-f3", "espeak", "en-gb-x-rp+f3", "test", 170, 60),
    Voice("es-029-klatt2", "espeak", "en-029+klatt2", "test", 160, 50),
    Voice("es-nyc-m8", "espeak", "en-us-nyc+m8", "test", 175, 38),
)
VOICE_IDS = {v.id: v for v in VOICES}


def sentence_splits(counts: dict[str, int], seed: int) -> dict[str, list[str]]:
    """{split: its sentences}: `counts[split]` distinct sentences each, in train, valid, test order; none in two."""
    sentences = make_sentences(sum(counts.get(s, 0) for s in SPLITS), seed)
    out, start = {}, 0
    for split in SPLITS:
        out[split] = sentences[start : start + counts.get(split, 0)]
        start += counts.get(split, 0)
    return out


def voice_for(voices: Sequence[Voice], split: str, index: int, seed: int) -> Voice:
    """The voice of sentence `index` of `split`: one of that split's `voices`, drawn with their weights.

    Depends only on (voices, split, index, seed), so a larger corpus keeps a smaller one's files.
    """
    mine = [v for v in voices if v.split == split]
    if not mine:
        raise ValueError(f"no voice setting belongs to the {split!r} split")
    return random.Random(f"{seed}:{split}:{index}").choices(mine, weights=[v.weight for v in mine])[0]


def check_engines(voices: Sequence[Voice]) -> None:
    """SystemExit naming the Debian packages if an engine the `voices` need is missing."""
    for engine, program in (("festival", "festival"), ("espeak", "espeak-ng")):
        if any(v.engine == engine for v in voices) and shutil.which(program) is None:
            raise SystemExit(f"{program} is not installed; it speaks the {engine} voices. Install with `{APT}`.")


def _festival_setup(voice: Voice) -> str:
    setup = [f"(voice_{voice.name})", f"(Parameter.set 'Duration_Stretch {voice.speed:g})"]
    if voice.f0 is not None:
        setup.append(f"(set! int_lr_params '((target_f0_mean {voice.f0}) (target_f0_std {voice.f0 * 0.15:g}) "
                     "(model_f0_mean 170) (model_f0_std 34)))")
    return "\n".join(setup)


def synthesise(voice: Voice, items: Sequence[tuple[str, Path]]) -> None:
    """Speak each (text, wav) of `items` with `voice` into the WAV file `wav`, at the engine's own rate.

    Festival speaks them all in one process (loading a voice takes longer than a sentence); a
    missing or empty WAV afterwards is the caller's to report.
    """
    commands = []
    if voice.engine == "espeak":
        commands = [["espeak-ng", "-v", voice.name, "-s", f"{voice.speed:g}", "-p", str(voice.f0), "-w", str(wav),
                     text] for text, wav in items]
    elif items:
        script = items[0][1].parent / f"{voice.id}.scm"
        lines = [_festival_setup(voice)] + [
            f'(utt.save.wave (utt.synth (Utterance Text "{_scheme_string(text)}")) "{_scheme_string(str(wav))}" '
            "'riff)" for text, wav in items]
        script.write_text("\n".join(lines) + "\n")
        commands = [["festival", "-b", str(script)]]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S * len(items))
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed (exit status {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()}")


def _scheme_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def trim_keep_pause(audio: np.ndarray, sample_rate: int, threshold_db: float = SILENCE_DB,
                    pause_s: float = PAUSE_S) -> np.ndarray:
    """`audio` (T,) trimmed to its loud part plus `pause_s` before and after, zero-padded where it had less.

    Loud: above `threshold_db` relative to the peak. ValueError if `audio` is silent.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must have shape (T,), got {audio.shape}")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak == 0.0:
        raise ValueError("audio is silent: the engine spoke nothing")
    loud = np.flatnonzero(np.abs(audio) > peak * 10.0 ** (threshold_db / 20.0))
    pause = round(pause_s * sample_rate)
    start, end = loud[0] - pause, loud[-1] + 1 + pause
    kept = audio[max(0, start) : min(len(audio), end)]
    return np.concatenate([np.zeros(max(0, -start), np.float32), kept,
                           np.zeros(max(0, end - len(audio)), np.float32)])


def set_level(audio: np.ndarray, rms: float = TARGET_RMS, peak_limit: float = PEAK_LIMIT) -> np.ndarray:
    """`audio` scaled to RMS `rms`, or less if that would put its peak above `peak_limit`; float32."""
    audio = np.asarray(audio, dtype=np.float32)
    current = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if current == 0.0:
        raise ValueError("audio is silent: there is no level to set")
    gain = min(rms / current, peak_limit / float(np.abs(audio).max()))
    return (audio * gain).astype(np.float32)


def render(voice: Voice, texts: Sequence[str], sample_rate: int) -> list[np.ndarray | Exception]:
    """Each of `texts` spoken by `voice`: float32 mono (T,) at `sample_rate`, trimmed with pauses kept, level set;
    or the exception that stopped that one."""
    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        items = [(text, Path(tmp) / f"{i:05d}.wav") for i, text in enumerate(texts)]
        synthesise(voice, items)
        out: list[np.ndarray | Exception] = []
        for _, wav in items:
            try:
                if not wav.is_file() or wav.stat().st_size <= 44:
                    raise RuntimeError(f"{voice.engine} wrote no audio")
                out.append(set_level(trim_keep_pause(read_audio(wav, sample_rate), sample_rate)))
            except (RuntimeError, ValueError, StudioError) as e:
                out.append(e)
    return out


def output_name(index: int, voice: Voice) -> str:
    """File name of sentence `index` of a split spoken by `voice`: 's00012_fest-slt.wav'."""
    return f"s{index:05d}_{voice.id}.wav"


def _versions() -> str:
    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.split("  Data at")[0]
    festival = subprocess.run(["festival", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{festival or 'festival'}; {espeak.strip() or 'espeak-ng'}"


def _voice_row(v: Voice) -> str:
    if v.engine == "espeak":
        how = f"eSpeak NG `-v {v.name} -s {v.speed:g} -p {v.f0}`"
    else:
        how = f"Festival `voice_{v.name}`, Duration_Stretch {v.speed:g}" + (
            f", kal int_lr target f0 mean {v.f0} Hz" if v.f0 is not None else "")
    return f"| {v.id} | {v.split} | {how} | {v.weight} |"


def write_source(out: Path, command: str, args: argparse.Namespace, voices: Sequence[Voice], run: str,
                 failed: list[str]) -> None:
    """Write `out/SOURCE.md`: how the folder was made, its voices, and its counts and hours per split."""
    rows = []
    for split in SPLITS:
        files = sorted((out / split).glob("*.wav"))
        seconds = sum(sf.info(f).duration for f in files)
        heard = sorted({f.stem.split("_", 1)[1] for f in files})
        hours = f"{seconds / 3600:.2f} h ({seconds / 60:.1f} min)"
        rows.append(f"| {split} | {len(files)} | {hours} | {', '.join(heard)} |")
    failures = "".join(f"\n- {f}" for f in failed) or " none."
    text = f"""# Speech rendered with Festival and eSpeak NG

Training audio for the speech WaveNet: English sentences spoken by synthetic voices. Not
committed (`data/` is in .gitignore); rebuild it with

    {command}

- Engines: {_versions()} (Debian packages festival, festvox-kallpc16k, festvox-us-slt-hts,
  espeak-ng). kal_diphone joins diphone units cut from recordings of a real (male, US) speaker;
  cmu_us_slt_arctic_hts is an HTS statistical voice trained on a real (female, US) speaker;
  eSpeak NG is a formant synthesiser (voice variants change formants, breath and pitch).
- Text: {args.train} + {args.valid} + {args.test} distinct sentences from scripts/speech_text.py
  (seed {args.seed}), a grammar over word lists written for this project (no third-party text, no
  licence beyond the project's); train takes the first, valid the next, test the rest, so no
  sentence is in two splits. `transcripts.tsv` lists each file's sentence.
- Voices: each setting belongs to one split (table), so valid and test voices are never heard in
  training; each sentence is spoken once, by a voice of its split drawn with the weights.
- Audio: resampled to {args.sample_rate} Hz mono (soxr HQ), trimmed to what is louder than
  {SILENCE_DB:g} dB re the peak plus {PAUSE_S:g} s of pause on each side, level set to RMS
  {TARGET_RMS:g} (peak at most {PEAK_LIMIT:g}), 16-bit PCM WAV: `{{split}}/s{{j:05d}}_{{voice}}.wav`.

| voice | split | setting | weight |
|---|---|---|---|
{chr(10).join(_voice_row(v) for v in voices)}

| split | files | duration | voices heard |
|---|---|---|---|
{chr(10).join(rows)}

Last run: {run}. Utterances that failed:{failures}
"""
    (out / "SOURCE.md").write_text(text)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _voice_id(text: str) -> str:
    if text not in VOICE_IDS:
        raise argparse.ArgumentTypeError(f"unknown voice {text!r}; the voices are {', '.join(VOICE_IDS)}")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render English sentences with Festival and eSpeak NG voices to an audio folder "
                    f"OUT/{{train,valid,test}}/*.wav, or one sentence to one WAV. Needs `{APT}`.")
    parser.add_argument("--out", type=Path, default=Path("data/speech16k"),
                        help="audio folder to write (with --sentence: the WAV file)")
    parser.add_argument("--train", type=_count, default=3600, help="sentences in train")
    parser.add_argument("--valid", type=_count, default=300, help="sentences in valid")
    parser.add_argument("--test", type=_count, default=300, help="sentences in test")
    parser.add_argument("--seed", type=_count, default=0, help="seed of the sentences and of the voice draws")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="write only these splits; the others' sentences are still set aside, so each "
                             "file is the one the whole corpus has (e.g. `--splits test` for the test set alone)")
    parser.add_argument("--voices", type=_voice_id, nargs="+", default=None,
                        help="use only these voice settings (each keeps its split; default: all)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="sample rate of the WAVs, Hz")
    parser.add_argument("--sentence", default=None, help="render only this sentence, with --voice, to --out")
    parser.add_argument("--voice", type=_voice_id, default="fest-slt", help="the voice of --sentence")
    args = parser.parse_args(argv)
    if args.sample_rate <= 0:
        parser.error(f"--sample-rate must be positive, got {args.sample_rate}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.sentence is not None:
        voice = VOICE_IDS[args.voice]
        check_engines([voice])
        audio = render(voice, [args.sentence], args.sample_rate)[0]
        if isinstance(audio, Exception):
            raise SystemExit(f"could not render {args.sentence!r} with {voice.id}: {audio}")
        write_wav(args.out, audio, args.sample_rate)
        print(f"wrote {args.out}")
        return
    voices = [VOICE_IDS[i] for i in args.voices] if args.voices else list(VOICES)
    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    for split, n in counts.items():
        if n and split in args.splits and not any(v.split == split for v in voices):
            raise SystemExit(f"--{split} {n} asks for {split} sentences, but none of the voices belongs to {split}")
    check_engines(voices)
    jobs = [(text, voice_for(voices, split, j, args.seed), split, j)
            for split, texts in sentence_splits(counts, args.seed).items() if split in args.splits
            for j, text in enumerate(texts)]
    lines = ["split\tfile\tvoice\tsentence"] + [
        f"{split}\t{output_name(j, voice)}\t{voice.id}\t{text}" for text, voice, split, j in jobs]
    pending = [(text, voice, args.out / split / output_name(j, voice)) for text, voice, split, j in jobs
               if not (args.out / split / output_name(j, voice)).exists()]
    batches = [chunk for voice in voices for mine in [[job for job in pending if job[1] == voice]]
               for chunk in (mine[i : i + BATCH] for i in range(0, len(mine), BATCH))]

    start = time.perf_counter()
    rendered, skipped, failed = 0, len(jobs) - len(pending), []
    progress = tqdm(total=len(pending), unit="utt", desc="sentences")
    for batch in batches:
        voice = batch[0][1]
        try:
            outputs = render(voice, [text for text, _, _ in batch], args.sample_rate)
        except (RuntimeError, subprocess.TimeoutExpired) as e:  # listed in SOURCE.md; the other voices go on
            outputs = [e] * len(batch)
        for (_, _, path), audio in zip(batch, outputs, strict=True):
            if isinstance(audio, Exception):
                tqdm.write(f"{path.name}: {type(audio).__name__}: {audio}", file=sys.stderr)
                failed.append(f"{path.name}: {type(audio).__name__}: {audio}")
            else:
                write_wav(path, audio, args.sample_rate)
                rendered += 1
        progress.update(len(batch))
        progress.set_postfix(rendered=rendered, skipped=skipped, failed=len(failed))
    progress.close()

    run = f"rendered {rendered}, skipped {skipped} that existed, failed {len(failed)}, " \
          f"in {time.perf_counter() - start:.0f} s"
    command = shlex.join(["python", "scripts/render_speech.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    write_source(args.out, command, args, voices, run, failed)
    print(f"{run}; see {args.out / 'SOURCE.md'}")
    if failed:
        raise SystemExit(f"{len(failed)} utterance(s) failed to render; see {args.out / 'SOURCE.md'}")


if __name__ == "__main__":
    main()
