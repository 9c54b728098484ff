"""Pull checkpoints from the Hugging Face Hub and push them back, with the real `huggingface_hub` client.

A Hub model repo is the same folder as a local checkpoint: `config.json` + `model.safetensors` +
`README.md` (+ `metrics.json` when there is one). Nothing else is downloaded or uploaded.

    pull("studio/tiny-wavenet")                  -> the snapshot folder in huggingface_hub's cache
    pull("studio/tiny-wavenet", "v1")            -> a branch, tag or commit hash
    push("runs/x/checkpoints/step_000100", "me/tiny-wavenet", token)   -> the repo's URL

Where the Hub is, and whether to use it, is huggingface_hub's business, read from the environment
when `huggingface_hub` is first imported (so set these before starting the app or a CLI):

- `HF_ENDPOINT`: the Hub's URL (default https://huggingface.co); tests point it at a local server.
- `HF_HOME` / `HF_HUB_CACHE`: where the standard cache lives (default ~/.cache/huggingface/hub).
  Pulled models stay there and are shared with every other huggingface_hub user on the machine.
- `HF_HUB_OFFLINE=1`: never touch the network; `pull` answers from the cache only. Without it a
  model already in the cache still loads when the Hub cannot be reached.
- `STUDIO_NO_DOWNLOADS` (set by `python app.py --public-demo`): `pull` answers from the cache only.
- `HF_TOKEN`: the token `pull` uses for private or gated repos. `push` never uses it: the person
  pushing types a token, which goes straight to `HfApi(token=...)` for that one call and is never
  stored, logged, or put into an error message.

Timeouts are short: a first small request (`/api/models/...`, TIMEOUT seconds) tells whether the Hub
answers; if it does not, `pull` goes straight to the cache instead of waiting on huggingface_hub's
retries (about 24 s per file). `HF_HUB_ETAG_TIMEOUT` / `HF_HUB_DOWNLOAD_TIMEOUT` still apply to downloads.

Every failure a user can cause is a HubError (the Hub said no, or cannot be reached) or a
CheckpointError (the repo is not a checkpoint, or its weights do not match its config), with a
message that says what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx2  # the HTTP client huggingface_hub 2.x raises its network errors from
from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    BadRequestError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from core.checkpoints import CARD, CONFIG, METRICS, WEIGHTS, is_checkpoint, load_checkpoint, read_config
from core.errors import CheckpointError, HubError

FILES = (CONFIG, WEIGHTS, CARD, METRICS)  # what a Hub checkpoint repo holds; nothing else moves
TIMEOUT = 5.0  # seconds for the first request to the Hub and for each file's metadata request
TOKENS_URL = "https://huggingface.co/settings/tokens"
_NETWORK_ERRORS = (httpx2.TransportError, OfflineModeIsEnabled)
_REVISION = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_+.-]*(?:/[A-Za-z0-9_+-][A-Za-z0-9_+.-]*)*")  # see check_revision


def check_repo_id(repo_id: str) -> str:
    """The repo id, stripped; HubError saying what a repo id looks like otherwise."""
    if isinstance(repo_id, str):
        repo_id = repo_id.strip()
    if not repo_id:
        raise HubError("give a repo id, like 'namespace/model-name'")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(
            f"{repo_id!r} is not a valid repo id: it looks like 'namespace/model-name', using letters, digits, "
            "'-', '_' and '.' (at most 96 characters; no '--' or '..')"
        ) from None
    return repo_id


def check_revision(revision: str | None) -> str | None:
    """The revision (branch, tag or commit hash), stripped; None for the default branch.

    Only what a Git ref name may hold is accepted: names of letters, digits, '_', '-', '+' and '.',
    joined by single '/' (like `v1.0`, `refs/pr/1`, a 40-digit hash). Anything that could act as a
    path is refused: huggingface_hub joins the revision to the cache folder (`refs/<revision>`) when
    it answers from the cache, so an absolute path, a '..' or a backslash would make it read a file
    anywhere on the disk and serve the folder that file names.
    """
    if revision is None:
        return None
    if not isinstance(revision, str):
        raise HubError(f"revision must be a branch, tag or commit hash, got {revision!r}")
    revision = revision.strip()
    if revision and (len(revision) > 256 or not _REVISION.fullmatch(revision) or ".." in revision
                     or revision.endswith((".", ".lock"))):
        raise HubError(f"{revision!r} is not a valid revision: give a branch, tag or commit hash (like 'main', "
                       "'v1.0', 'refs/pr/1'): letters, digits, '_', '-', '+' and '.', parts joined by single '/', "
                       "no spaces, no '..', not starting with '/' or '.'")
    return revision or None


def pull(repo_id: str, revision: str | None = None, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download a checkpoint repo into huggingface_hub's cache (or find it there) and return its snapshot folder.

    The folder is checked to load strictly (CheckpointError naming the tensor if the weights do not
    match the config). Works offline (HF_HUB_OFFLINE=1, or the Hub unreachable) once the repo is cached.
    """
    repo_id, revision = check_repo_id(repo_id), check_revision(revision)
    where = repo_id if revision is None else f"{repo_id} at revision {revision!r}"
    try:
        offline = bool(os.environ.get("STUDIO_NO_DOWNLOADS")) or not _hub_answers(repo_id, revision)
        folder = Path(snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=list(FILES),
            local_files_only=offline, etag_timeout=TIMEOUT,
        ))
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {revision!r}: leave the revision empty for the default branch, "
                       "or give an existing branch, tag or commit hash") from None
    except GatedRepoError:
        raise HubError(f"{repo_id} is gated: accept its conditions on the Hub, then run the app with a token "
                       "(HF_TOKEN) that has access") from None
    except HfHubHTTPError as e:
        if isinstance(e, RepositoryNotFoundError) or _status(e) == 401:
            raise HubError(f"repo {repo_id!r} was not found on the Hub ({constants.ENDPOINT}), or it is private: "
                           "check the id, or run the app with a token (HF_TOKEN) that can read it") from None
        if isinstance(e, RemoteEntryNotFoundError):
            raise CheckpointError(f"{where} is not an Autoregressive Studio checkpoint: a file it lists is missing "
                                  f"(it needs {CONFIG} and {WEIGHTS})") from None
        raise HubError(f"the Hub answered HTTP {_status(e)} for {where}; try again later") from None
    except (LocalEntryNotFoundError, *_NETWORK_ERRORS):
        raise HubError(_not_cached_message(where, cache_dir)) from None
    except OSError as e:
        raise HubError(f"could not write {where} into the cache ({e}); check the disk and HF_HOME") from None
    except ValueError:  # e.g. a reply that is not JSON: HF_ENDPOINT is not a Hub
        raise HubError(f"{constants.ENDPOINT} did not answer like the Hugging Face Hub; check HF_ENDPOINT") from None
    missing = [name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{where} is not an Autoregressive Studio checkpoint: it has no "
                              f"{' and no '.join(missing)}")
    try:
        load_checkpoint(folder)
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}") from None
    return folder


def push(
    folder: str | os.PathLike,
    repo_id: str,
    token: str,
    *,
    private: bool = False,
    revision: str | None = None,
) -> str:
    """Upload a checkpoint folder's files to a model repo (created if needed); returns the repo's URL.

    The folder is checked to be a checkpoint before any request. `token` (a Hub token with write
    access) is used for this call only: it is never stored, logged, or included in an error.
    """
    repo_id, revision = check_repo_id(repo_id), check_revision(revision)
    if not isinstance(token, str) or not token.strip():
        raise HubError(f"pushing needs a Hub token with write access; create one at {TOKENS_URL}")
    token = token.strip()
    folder = Path(folder)
    if not is_checkpoint(folder):
        raise CheckpointError(f"{folder} is not a checkpoint: a checkpoint folder holds {CONFIG} and {WEIGHTS}")
    read_config(folder)  # a config this app cannot build is refused before anything is uploaded
    try:
        api = HfApi(token=token)
        url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        if revision is not None and revision != constants.DEFAULT_REVISION:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
            url = f"{url}/tree/{revision}"
        api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision, allow_patterns=list(FILES),
                          commit_message=f"Upload Autoregressive Studio checkpoint {folder.name}")
    except (OSError, ValueError, httpx2.HTTPError) as e:  # Hub, network and disk errors; none may carry the token
        raise HubError(_redact(_push_message(e, repo_id), token)) from None
    return url


def _hub_answers(repo_id: str, revision: str | None) -> bool:
    """Whether the Hub answers at all (any HTTP status counts), within TIMEOUT seconds."""
    try:
        HfApi().model_info(repo_id, revision=revision, timeout=TIMEOUT)
    except _NETWORK_ERRORS:
        return False
    except (HfHubHTTPError, ValueError):  # it answered; snapshot_download reports what it said
        pass
    return True


def _not_cached_message(where: str, cache_dir: str | os.PathLike | None) -> str:
    if os.environ.get("STUDIO_NO_DOWNLOADS"):
        return (f"downloads are off on this server (a public demo: STUDIO_NO_DOWNLOADS) and {where} is not in its "
                "cache; only models pulled before load here")
    if constants.is_offline_mode():
        return (f"HF_HUB_OFFLINE=1 is set and {where} is not in the cache ({cache_dir or constants.HF_HUB_CACHE}): "
                "pull it once with the network on, or unset HF_HUB_OFFLINE")
    return (f"cannot reach the Hub ({constants.ENDPOINT}) and {where} is not in the cache: check the connection "
            "and try again (models pulled before load offline, also with HF_HUB_OFFLINE=1)")


def _push_message(e: Exception, repo_id: str) -> str:
    status = _status(e)
    if isinstance(e, _NETWORK_ERRORS):
        if constants.is_offline_mode():
            return "HF_HUB_OFFLINE=1 is set: pushing needs the network; unset it and try again"
        return f"cannot reach the Hub ({constants.ENDPOINT}): check the connection and try again"
    if status == 401 or isinstance(e, RepositoryNotFoundError):
        return f"the Hub refused the token for {repo_id}: check it, and that it has write access ({TOKENS_URL})"
    if status == 403:
        return f"this token cannot write to {repo_id}: use a token with write access to that namespace ({TOKENS_URL})"
    if isinstance(e, BadRequestError) or status == 400:
        return f"the Hub refused the upload to {repo_id}: {_first_line(e)}"
    if isinstance(e, HfHubHTTPError):
        return f"the Hub answered HTTP {status} while pushing to {repo_id}; try again later"
    if isinstance(e, ValueError):  # e.g. model card metadata the Hub calls invalid
        return f"the Hub refused the upload to {repo_id}: {_first_line(e)}"
    return f"pushing to {repo_id} failed: {type(e).__name__}: {_first_line(e)}"


def _status(e: Exception) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return " ".join(lines[:3]) or type(e).__name__


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***")
