"""What an audio model was trained on, in words, and what that means for what it makes of a clip.

A model continues a clip with the kind of sound it was trained on: a model of melodies turns speech
into sustained notes. The Audio page says so under the chosen model.
"""

from __future__ import annotations

# (words in the data's kind, folder or card, what kind of model that makes, what it does to other sounds)
KINDS = (
    (("melod", "chorale", "soprano"), "a melody model", "speech and noise come out as sustained notes"),
    (("tones", "sine", "chirp"), "a tone model", "anything comes out as tones, chords and chirps"),
    (("speech", "voice", "spoken"), "a speech model", "music comes out as babble with a voice's pitch and rhythm"),
)


def trained_on(data: dict | None) -> str:
    """A Markdown line from a model store entry's "data" (core.checkpoints.training_data); '' if nothing says.

    E.g. 'Trained on: the soprano lines of … — a melody model: speech and noise come out as sustained notes.'
    """
    if not data:
        return ""
    what = data["card"] or ", ".join(x for x in (data["kind"], data["root"]) if x)
    kind = _kind(" ".join((data["kind"], data["root"]))) or _kind(data["card"])  # the folder says it best
    line = f"Trained on: {what.rstrip('.')}"
    return line + (f" — **{kind[0]}**: {kind[1]}." if kind else ".")


def _kind(text: str) -> tuple[str, str] | None:
    """(what kind of model, what it does to other sounds) of the first KINDS entry whose words `text` holds."""
    words = text.lower()
    return next(((name, effect) for keys, name, effect in KINDS if any(k in words for k in keys)), None)
