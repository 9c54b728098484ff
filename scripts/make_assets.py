"""Make the example files the app's pages offer (assets/audio, assets/digits), small and ending in sound.

    python scripts/make_assets.py                      all of them (needs data/melodies8k and espeak-ng)
    python scripts/make_assets.py --only chord drawing the ones that need nothing outside the repository

What each file is and how it was made: assets/SOURCE.md. The clips end in sound, not in silence:
the Audio page continues the end of a clip, and a clip that ends in silence teaches nothing.

- chorale_melody.wav  the last CLIP_SECONDS before a loud moment of a held-out chorale melody
                      (data/melodies8k/test, the bundled audio model's test split: `make audio-model`
                      renders it), 8 kHz.
- chord.wav           a C major triad with a few harmonics, a 50 ms fade-in and no fade-out, 16 kHz.
- spoken.wav          one sentence spoken by espeak-ng (Debian `espeak-ng`), resampled to 16 kHz,
                      trailing silence cut.
- digits/test_<i>_<label>.png  MNIST test digits (core.data.mnist_sources), black on white, 280 x 280.
- digits/drawn_4.png  a 4 drawn with two strokes of a round brush, black on white, 280 x 280.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import read_audio, write_wav  # noqa: E402
from core.primer import trim_trailing_silence  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
MELODIES = ROOT / "data" / "melodies8k" / "test"
MELODY_FILE = "chorale039_bwv255_gm068.wav"  # oboe: a clear, sustained tone
CLIP_SECONDS = 4.0
SENTENCE = "An autoregressive model predicts each sample from the ones before it."
TEST_DIGITS = (0, 1, 2, 3)  # indices into MNIST's test split: a 7, a 2, a 1 and a 0
CANVAS = 280
END_DBFS = -30.0  # a clip's last 50 ms must be louder than this (RMS): it ends in sound


def end_level_dbfs(audio: np.ndarray, sample_rate: int, seconds: float = 0.05) -> float:
    """RMS level of the last `seconds` of audio (T,), in dBFS."""
    tail = audio[-max(1, int(seconds * sample_rate)):]
    return float(20 * np.log10(np.sqrt(np.mean(tail.astype(np.float64) ** 2)) + 1e-12))


def chorale_melody(out: Path, melodies: Path = MELODIES) -> None:
    """CLIP_SECONDS of a held-out melody ending at its loudest 50 ms frame after the first CLIP_SECONDS."""
    rate = 8000
    audio = read_audio(melodies / MELODY_FILE, rate)
    frame = rate // 20
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    first = int(CLIP_SECONDS * 20)
    end = (first + int(np.argmax(rms[first:]))) * frame + frame
    write_wav(out, audio[end - int(CLIP_SECONDS * rate) : end], rate)


def chord(out: Path) -> None:
    """2 s of C4-E4-G4, each with harmonics 1..4 at 1/k amplitude, peak 0.5, a 50 ms fade-in."""
    rate, seconds = 16000, 2.0
    t = np.arange(int(rate * seconds)) / rate
    audio = sum(np.sin(2 * np.pi * k * f * t) / k for f in (261.63, 329.63, 392.00) for k in range(1, 5))
    audio = 0.5 * audio / np.abs(audio).max()
    audio[: rate // 20] *= np.linspace(0, 1, rate // 20)
    write_wav(out, audio.astype(np.float32), rate)


def spoken(out: Path) -> None:
    """SENTENCE by espeak-ng, at 16 kHz, its trailing silence cut so it ends in the last word."""
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "spoken.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SENTENCE], check=True)
        audio = read_audio(raw, 16000)
    audio = 0.9 * audio / np.abs(audio).max()
    write_wav(out, trim_trailing_silence(audio, 16000, threshold_dbfs=END_DBFS), 16000)


def test_digits(folder: Path) -> None:
    """MNIST test digits TEST_DIGITS as black-on-white PNGs, each pixel a 10 x 10 block."""
    from core.data.mnist_sources import load_mnist

    splits = load_mnist()
    for i in TEST_DIGITS:
        digit = splits["x_test"][i].reshape(28, 28)
        big = (255 - digit).repeat(CANVAS // 28, 0).repeat(CANVAS // 28, 1)
        Image.fromarray(big.astype(np.uint8), "L").save(folder / f"test_{i}_{int(splits['y_test'][i])}.png",
                                                        optimize=True)


def drawing(folder: Path) -> None:
    """A 4 in two strokes of a 22 px round brush, black on white, as a person draws it on the canvas."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(image)
    for stroke in ([(150, 50), (85, 165), (200, 165)], [(170, 95), (170, 235)]):
        pen.line(stroke, fill=0, width=22, joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            pen.ellipse((x - 11, y - 11, x + 11, y + 11), fill=0)
    image.save(folder / "drawn_4.png", optimize=True)


MAKERS = {
    "chorale": lambda: chorale_melody(ASSETS / "audio" / "chorale_melody.wav"),
    "chord": lambda: chord(ASSETS / "audio" / "chord.wav"),
    "spoken": lambda: spoken(ASSETS / "audio" / "spoken.wav"),
    "digits": lambda: test_digits(ASSETS / "digits"),
    "drawing": lambda: drawing(ASSETS / "digits"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(MAKERS), help="make only these (default: all)")
    args = p.parse_args(argv)
    (ASSETS / "audio").mkdir(parents=True, exist_ok=True)
    (ASSETS / "digits").mkdir(parents=True, exist_ok=True)
    for name in args.only or MAKERS:
        MAKERS[name]()
    for path in sorted((ASSETS / "audio").glob("*.wav")):
        audio, rate = sf.read(path, dtype="float32")
        level = end_level_dbfs(audio, rate)
        print(f"{path.relative_to(ROOT)}: {len(audio) / rate:.2f} s at {rate} Hz, {path.stat().st_size:,} bytes, "
              f"last 50 ms at {level:.1f} dBFS")
        if level < END_DBFS:
            raise SystemExit(f"{path} ends in silence ({level:.1f} dBFS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
