"""scripts/render_speech.py: the split rules everywhere; a tiny corpus rendered end to end where Festival and
eSpeak NG are installed (Debian festival, festvox-kallpc16k, festvox-us-slt-hts, espeak-ng). CI installs them
(`.ci/run`), so there a missing one fails these tests instead of skipping them."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from core.data.audio_folder import audio_files
from scripts import render_speech
from scripts.render_speech import VOICES, main, sentence_splits, set_level, trim_keep_pause, voice_for
from scripts.speech_text import make_sentences

SR = 16000


def engines_installed() -> None:
    """Skip unless Festival (with both voices) and eSpeak NG are installed; fail in CI, which installs them."""
    voices = ("/usr/share/festival/voices/english/kal_diphone", "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts")
    present = shutil.which("festival") and shutil.which("espeak-ng") and all(os.path.isdir(v) for v in voices)
    if not present:
        reason = "needs `apt-get install festival festvox-kallpc16k festvox-us-slt-hts espeak-ng`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs the speech engines, but this test {reason}", pytrace=False)
        pytest.skip(reason)


def test_sentences_are_distinct_deterministic_and_a_prefix_of_more():
    sentences = make_sentences(500, seed=0)
    assert len(set(sentences)) == 500 and sentences == make_sentences(500, seed=0)
    assert make_sentences(100, seed=0) == sentences[:100] and make_sentences(100, seed=1) != sentences[:100]
    assert all(s[0].isupper() and s[-1] in ".?" for s in sentences)


def test_splits_share_no_sentence_and_no_voice_setting():
    splits = sentence_splits({"train": 300, "valid": 30, "test": 30}, seed=0)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [300, 30, 30]
    assert len({s for texts in splits.values() for s in texts}) == 360
    by_split = {split: {v for v in VOICES if v.split == split} for split in ("train", "valid", "test")}
    assert all(by_split.values()), "every split has voices"
    settings = {split: {(v.engine, v.name, v.speed, v.f0) for v in vs} for split, vs in by_split.items()}
    assert not settings["train"] & settings["valid"] and not settings["train"] & settings["test"]
    assert not settings["valid"] & settings["test"]
    # eSpeak NG's voice variant (after '+') sets the voice's timbre: none of valid's or test's is heard in training
    variants = {split: {v.name.split("+")[1] for v in vs if v.engine == "espeak"} for split, vs in by_split.items()}
    assert not variants["train"] & (variants["valid"] | variants["test"])
    assert {v.split for v in VOICES if v.engine == "festival"} == {"train"}, "both Festival speakers train"
    assert len({v.id for v in VOICES}) == len(VOICES)


def test_each_sentence_gets_a_voice_of_its_own_split_reproducibly():
    drawn = [voice_for(VOICES, "test", j, seed=0) for j in range(200)]
    assert {v.split for v in drawn} == {"test"} and drawn == [voice_for(VOICES, "test", j, seed=0) for j in range(200)]
    assert len({v.id for v in drawn}) == sum(v.split == "test" for v in VOICES), "every test voice is used"
    train = [voice_for(VOICES, "train", j, seed=0) for j in range(2000)]
    festival = sum(v.engine == "festival" for v in train) / len(train)
    weights = sum(v.weight for v in VOICES if v.split == "train")
    expected = sum(v.weight for v in VOICES if v.split == "train" and v.engine == "festival") / weights
    assert abs(festival - expected) < 0.05
    with pytest.raises(ValueError, match="no voice setting belongs"):
        voice_for([v for v in VOICES if v.split == "train"], "test", 0, seed=0)


def test_trimming_keeps_a_short_pause_and_pads_where_the_engine_left_none():
    loud = np.full(SR, 0.5, np.float32)
    padded = trim_keep_pause(np.concatenate([np.zeros(SR, np.float32), loud, np.zeros(SR, np.float32)]), SR)
    pause = round(render_speech.PAUSE_S * SR)
    assert len(padded) == SR + 2 * pause and not padded[:pause].any() and not padded[-pause:].any()
    assert len(trim_keep_pause(loud, SR)) == SR + 2 * pause, "zeros added on both sides"
    with pytest.raises(ValueError, match="silent"):
        trim_keep_pause(np.zeros(100, np.float32), SR)


def test_level_is_rms_0_1_unless_the_peak_would_pass_0_95():
    x = np.sin(np.linspace(0, 100, SR)).astype(np.float32) * 0.01
    assert abs(np.sqrt(np.mean(set_level(x) ** 2)) - 0.1) < 1e-4
    spike = np.zeros(SR, np.float32)
    spike[0] = 1e-3
    assert abs(np.abs(set_level(spike)).max() - 0.95) < 1e-6


def test_renders_a_tiny_corpus_of_two_sentences_in_two_voices_split_by_sentence_and_voice(tmp_path):
    engines_installed()
    out = tmp_path / "speech"
    main(["--out", str(out), "--train", "1", "--valid", "0", "--test", "1", "--voices", "fest-kal", "es-us-m5"])
    train, test = audio_files(out, "train"), audio_files(out, "test")
    assert [p.name for p in train] == ["s00000_fest-kal.wav"] and [p.name for p in test] == ["s00000_es-us-m5.wav"]
    rows = [line.split("\t") for line in (out / "transcripts.tsv").read_text().splitlines()[1:]]
    assert [r[:3] for r in rows] == [["train", "s00000_fest-kal.wav", "fest-kal"],
                                     ["test", "s00000_es-us-m5.wav", "es-us-m5"]]
    assert rows[0][3] != rows[1][3], "the two splits speak different sentences"
    for path in train + test:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        audio = sf.read(path, dtype="float32")[0]
        assert 0.8 < len(audio) / SR < 8, "a sentence takes seconds"
        assert abs(np.sqrt(np.mean(audio**2)) - 0.1) < 0.02 or np.abs(audio).max() > 0.9
        assert np.abs(audio[: SR // 20]).max() < 0.05 and np.abs(audio[-SR // 20 :]).max() < 0.05, "pauses kept"
    source = (out / "SOURCE.md").read_text()
    assert "scripts/render_speech.py --out" in source and "| test | 1 |" in source and "es-us-m5" in source
    main(["--out", str(out), "--train", "1", "--valid", "0", "--test", "1", "--voices", "fest-kal", "es-us-m5"])
    assert "skipped 2 that existed" in (out / "SOURCE.md").read_text()


def test_rendering_one_split_writes_the_files_the_whole_corpus_has_for_it(tmp_path):
    engines_installed()
    args = ["--train", "2", "--valid", "1", "--test", "1", "--voices", "fest-kal", "es-wmid-m7", "es-us-m5"]
    main(["--out", str(tmp_path / "all"), *args])
    main(["--out", str(tmp_path / "test"), *args, "--splits", "test"])
    assert not (tmp_path / "test" / "train").exists() and not (tmp_path / "test" / "valid").exists()
    [alone], [whole] = audio_files(tmp_path / "test", "test"), audio_files(tmp_path / "all", "test")
    assert alone.name == whole.name
    assert np.array_equal(sf.read(alone)[0], sf.read(whole)[0]), "the same sentence in the same voice"


def test_renders_one_sentence_to_a_file_with_the_hts_voice(tmp_path):
    engines_installed()
    main(["--sentence", "Hello there.", "--voice", "fest-slt", "--out", str(tmp_path / "hello.wav")])
    audio, rate = sf.read(tmp_path / "hello.wav")
    assert rate == SR and 0.5 < len(audio) / SR < 3


def test_asking_for_a_split_without_voices_says_so(tmp_path):
    with pytest.raises(SystemExit, match="none of the voices belongs to test"):
        main(["--out", str(tmp_path), "--train", "1", "--valid", "0", "--test", "1", "--voices", "fest-kal"])
