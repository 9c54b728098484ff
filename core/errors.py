"""The one exception family a user can cause.

Every error that comes from something a person chose (an upload, a config value, a
path, a repo id) is a `StudioError`; its message says what was wrong and what to do.
The UI shows the message and keeps serving; the CLIs print it and exit with status 2.
"""


class StudioError(ValueError):
    """An error a user can cause (bad upload, bad config, bad repo id...). The message says what to do."""


class AudioError(StudioError):
    """Audio that cannot be used: not audio, truncated, empty, NaN/inf, too long or too large."""


class ConfigError(StudioError):
    """A configuration that cannot be built or run."""


class CheckpointError(StudioError):
    """A folder that is not a loadable checkpoint, or weights that do not match its config."""


class HubError(StudioError):
    """A Hugging Face Hub request that failed: bad repo id or revision, repo not found, no network, token refused."""
