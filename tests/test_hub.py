"""core.hub against a local fake Hub, driven by the real huggingface_hub client.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is imported, and
gradio imports it early in any pytest process that collects an app test. So the client side runs
in a `HubClient` subprocess started with those variables set: it imports core.hub once, then
answers JSON calls on stdin. Nothing here can reach huggingface.co.

`FakeHub` serves the endpoints huggingface_hub 2.4 calls for snapshot_download, create_repo,
create_branch and upload_folder (see its docstring); tests/test_app_models.py uses it too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
from safetensors.torch import load_file

from core.checkpoints import CARD, CONFIG, METRICS, WEIGHTS, load_checkpoint, save_checkpoint
from core.errors import HubError
from core.hub import check_revision
from core.models.wavenet import WaveNet, WaveNetConfig

ROOT = Path(__file__).resolve().parents[1]
REPO = "studio/tiny-wavenet"
TOKEN = "hf_test_SECRET_token_0123456789"


class FakeHub:
    """A threaded HTTP server speaking the part of the Hub API that huggingface_hub uses here.

    Downloads: GET /api/models/{repo}[/revision/{rev}] (repo info with the commit sha),
    GET /api/models/{repo}/tree/{rev} (the file list), HEAD and GET /{repo}/resolve/{rev}/{file}
    (ETag, X-Repo-Commit, Content-Length; the bytes). Unknown repos, revisions and files are 404
    with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound, as on the Hub.
    Uploads (need `Authorization: Bearer <a token in tokens>`, else 401): POST /api/repos/create,
    POST /api/validate-yaml, POST /api/models/{repo}/branch/{branch},
    POST /api/models/{repo}/preupload/{rev} (every file "regular"), POST /api/models/{repo}/commit/{rev}
    (ndjson with base64 file contents; makes a new commit on the branch).

    `requests` records (method, path, headers with lower-case names) of every request; `stop()` / `start()` take the
    server down and bring it back on the same port.
    """

    def __init__(self, tokens: tuple[str, ...] = (TOKEN,)):
        self.tokens = set(tokens)
        self.repos: dict[str, dict] = {}  # repo id -> {"branches": {name: sha}, "commits": {sha: {path: bytes}}}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

            def log_message(self, format, *args):  # quiet: the test reads `requests` instead
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add_repo(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Create or update `repo_id` with a commit holding exactly `files`; returns the commit sha."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, {"branches": {}, "commits": {}})
            return self._commit(repo, branch, dict(files))

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo["commits"][repo["branches"].get(revision, revision)]

    # -- request handling ------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(request.path).path
        with self.lock:
            self.requests.append((method, path, {k.lower(): v for k, v in request.headers.items()}))
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0)) if method == "POST" else b""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            with self.lock:
                status, headers, payload = self._route(method, parts, request.headers, body)
        except KeyError as e:  # a 404 with the Hub's error code, raised by _repo / _sha / _file
            status, headers, payload = 404, {"X-Error-Code": e.args[0][0], **e.args[0][1]}, {"error": e.args[0][0]}
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            request.send_header(key, value)
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(data)

    def _route(self, method: str, parts: list[str], headers, body: bytes) -> tuple[int, dict, object]:
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if method == "GET" and (not rest or rest[0] == "revision"):
                sha = self._sha(repo_id, rest[1] if rest else "main")
                files = self.repos[repo_id]["commits"][sha]
                return 200, {}, {"id": repo_id, "sha": sha, "private": False,
                                 "siblings": [{"rfilename": name} for name in sorted(files)]}
            if method == "GET" and rest[0] == "tree":
                files = self.repos[repo_id]["commits"][self._sha(repo_id, rest[1])]
                return 200, {}, [{"type": "file", "path": name, "size": len(data), "oid": _git_oid(data)}
                                 for name, data in sorted(files.items())]
            if method == "POST":
                if not self._authorized(headers):
                    return 401, {"X-Error-Message": "Invalid credentials in Authorization header"}, {"error": "401"}
                return self._write(repo_id, rest[0], rest[1], body)
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            if not self._authorized(headers):
                return 401, {"X-Error-Message": "Invalid credentials in Authorization header"}, {"error": "401"}
            spec = json.loads(body)
            repo_id = f"{spec['organization']}/{spec['name']}"
            url = f"{self.url}/{repo_id}"
            if repo_id in self.repos:
                return 409, {}, {"error": "You already created this model repo", "url": url}
            self.repos[repo_id] = {"branches": {}, "commits": {}, "private": spec.get("visibility") == "private"}
            self._commit(self.repos[repo_id], "main", {".gitattributes": b"*.safetensors filter=lfs\n"})
            return 200, {}, {"url": url}
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return 200, {}, {"errors": [], "warnings": []}
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("HEAD", "GET"):
            repo_id = "/".join(parts[:2])
            sha = self._sha(repo_id, parts[3])
            data = self._file(repo_id, sha, "/".join(parts[4:]))
            return 200, {"ETag": f'"{_git_oid(data)}"', "X-Repo-Commit": sha,
                         "Content-Type": "application/octet-stream"}, data
        return 404, {}, {"error": "no such endpoint"}

    def _write(self, repo_id: str, action: str, revision: str, body: bytes) -> tuple[int, dict, object]:
        repo = self._repo(repo_id)
        if action == "branch":
            if revision in repo["branches"]:
                return 409, {}, {"error": "Reference already exists"}
            repo["branches"][revision] = repo["branches"]["main"]
            return 200, {}, {}
        sha = self._sha(repo_id, revision)
        if action == "preupload":
            files = json.loads(body)["files"]
            return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in files]}
        if action == "commit":
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            files = dict(repo["commits"][sha])
            for line in lines:
                if line["key"] == "file":
                    files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            new = self._commit(repo, revision, files)
            return 200, {}, {"commitUrl": f"{self.url}/{repo_id}/commit/{new}", "commitOid": new,
                             "pullRequestUrl": None}
        return 404, {}, {"error": "no such endpoint"}

    def _commit(self, repo: dict, branch: str, files: dict[str, bytes]) -> str:
        digest = hashlib.sha1(repr((branch, len(repo["commits"]), sorted(files.items()))).encode())
        sha = digest.hexdigest()
        repo["commits"][sha] = files
        repo["branches"][branch] = sha
        return sha

    def _authorized(self, headers) -> bool:
        auth = headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer "):] in self.tokens

    def _repo(self, repo_id: str) -> dict:
        if repo_id not in self.repos:
            raise KeyError(("RepoNotFound", {}))
        return self.repos[repo_id]

    def _sha(self, repo_id: str, revision: str) -> str:
        repo = self._repo(repo_id)
        if revision in repo["branches"]:
            return repo["branches"][revision]
        if revision in repo["commits"]:
            return revision
        raise KeyError(("RevisionNotFound", {}))

    def _file(self, repo_id: str, sha: str, name: str) -> bytes:
        files = self.repos[repo_id]["commits"][sha]
        if name not in files:
            raise KeyError(("EntryNotFound", {"X-Repo-Commit": sha}))
        return files[name]


class HubClient:
    """A Python subprocess with HF_ENDPOINT / HF_HOME (/ HF_HUB_OFFLINE) set, calling core.hub functions."""

    PROGRAM = (
        "import json, sys, traceback\n"
        "from core import hub\n"
        "from core.errors import StudioError\n"
        "for line in sys.stdin:\n"
        "    call = json.loads(line)\n"
        "    try:\n"
        "        reply = {'value': str(getattr(hub, call['fn'])(*call['args'], **call['kwargs']))}\n"
        "    except StudioError as e:\n"
        "        reply = {'error': type(e).__name__, 'message': str(e)}\n"
        "    except Exception as e:\n"
        "        reply = {'error': type(e).__name__, 'message': traceback.format_exc()}\n"
        "    print(json.dumps(reply), flush=True)\n"
    )

    def __init__(self, endpoint: str, hf_home: Path, log: Path, offline: bool = False):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(ROOT))
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        self.log = log
        self._stderr = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", self.PROGRAM], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)

    def call(self, fn: str, *args, timeout: float = 30, **kwargs) -> dict:
        """{"value": str(result)} or {"error": exception class name, "message": ...}."""
        self.proc.stdin.write(json.dumps({"fn": fn, "args": [str(a) for a in args], "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"core.hub.{fn} did not answer in {timeout} s; stderr:\n{self.log.read_text()}"
        line = self.proc.stdout.readline()
        assert line, f"the client process died; stderr:\n{self.log.read_text()}"
        return json.loads(line)

    def close(self) -> str:
        """Stop the process; returns everything it wrote to stderr."""
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self._stderr.close()
        return self.log.read_text()


def tiny_model(**kwargs) -> WaveNet:
    config = dict(quantization_levels=256, dilations=[1, 2, 4], residual_channels=4, dilation_channels=4,
                  skip_channels=4, head_channels=4, sample_rate=8000)
    return WaveNet(WaveNetConfig(**{**config, **kwargs}))


def checkpoint_files(folder: Path) -> dict[str, bytes]:
    names = (CONFIG, WEIGHTS, CARD, METRICS)
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint folder the fake Hub serves as REPO."""
    torch.manual_seed(0)
    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("served") / "tiny", metrics={"bits_per_sample": 7.5})


@pytest.fixture(scope="module")
def fake_hub(served: Path, tmp_path_factory: pytest.TempPathFactory):
    hub = FakeHub().start()
    hub.add_repo(REPO, checkpoint_files(served))
    wrong = tmp_path_factory.mktemp("wrong")
    save_checkpoint(tiny_model(residual_channels=6), wrong / "wide")
    hub.add_repo("studio/mismatched", {**checkpoint_files(served), CONFIG: (wrong / "wide" / CONFIG).read_bytes()})
    hub.add_repo("studio/just-a-card", {CARD: b"# not a checkpoint\n"})
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf_home")


@pytest.fixture(scope="module")
def client(fake_hub: FakeHub, hf_home: Path, tmp_path_factory: pytest.TempPathFactory):
    client = HubClient(fake_hub.url, hf_home, tmp_path_factory.mktemp("logs") / "client.log")
    yield client
    client.close()


def test_pull_downloads_into_the_standard_cache_and_loads_the_served_weights(
        client: HubClient, served: Path, hf_home: Path) -> None:
    reply = client.call("pull", REPO)
    folder = Path(reply["value"])
    assert folder.is_relative_to(hf_home / "hub" / "models--studio--tiny-wavenet" / "snapshots")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG, WEIGHTS, CARD, METRICS])
    model = load_checkpoint(folder)
    expected = load_file(served / WEIGHTS)
    assert model.state_dict().keys() == expected.keys()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)


def test_pull_of_an_unknown_repo_says_it_was_not_found(client: HubClient) -> None:
    reply = client.call("pull", "studio/no-such-model")
    assert reply["error"] == "HubError"
    assert "'studio/no-such-model' was not found on the Hub" in reply["message"]
    assert "check the id" in reply["message"]


def test_pull_of_an_unknown_revision_names_it(client: HubClient) -> None:
    reply = client.call("pull", REPO, "v9")
    assert reply["error"] == "HubError" and "has no revision 'v9'" in reply["message"]


@pytest.mark.parametrize("repo_id", ["not a repo id", "a/b/c", "bad--name/x", ""])
def test_pull_of_a_malformed_repo_id_is_refused_before_any_request(client: HubClient, fake_hub: FakeHub,
                                                                   repo_id: str) -> None:
    before = len(fake_hub.requests)
    reply = client.call("pull", repo_id)
    assert reply["error"] == "HubError"
    assert "repo id" in reply["message"] and "namespace/model-name" in reply["message"]
    assert len(fake_hub.requests) == before


def test_pull_of_weights_that_do_not_match_the_config_names_the_tensor(client: HubClient) -> None:
    reply = client.call("pull", "studio/mismatched")
    assert reply["error"] == "CheckpointError"
    assert reply["message"].startswith("studio/mismatched: weights in")
    assert "tensor '" in reply["message"] and "the config needs" in reply["message"]


def test_pull_of_a_repo_without_weights_says_it_is_not_a_checkpoint(client: HubClient) -> None:
    reply = client.call("pull", "studio/just-a-card")
    assert reply["error"] == "CheckpointError"
    assert "not an Autoregressive Studio checkpoint: it has no config.json and no model.safetensors" in reply["message"]


def test_cached_model_loads_when_the_hub_is_down_and_with_hf_hub_offline(
        client: HubClient, fake_hub: FakeHub, hf_home: Path, tmp_path: Path) -> None:
    online = Path(client.call("pull", REPO)["value"])
    offline_client = HubClient(fake_hub.url, hf_home, tmp_path / "offline.log", offline=True)  # starts meanwhile
    fake_hub.stop()
    try:
        start = time.monotonic()
        assert client.call("pull", REPO) == {"value": str(online)}
        missing = client.call("pull", "studio/never-pulled")
        assert time.monotonic() - start < 5, "the Hub being down must not cost huggingface_hub's retries"
        assert missing["error"] == "HubError" and "cannot reach the Hub" in missing["message"]
        requests = len(fake_hub.requests)
        assert offline_client.call("pull", REPO) == {"value": str(online)}
        offline_missing = offline_client.call("pull", "studio/never-pulled")
        assert "HF_HUB_OFFLINE=1 is set" in offline_missing["message"]
    finally:
        fake_hub.start()
        offline_client.close()
    assert len(fake_hub.requests) == requests  # offline means no request at all


def test_a_revision_that_is_a_path_cannot_serve_a_folder_outside_the_cache(
        client: HubClient, fake_hub: FakeHub, hf_home: Path, tmp_path: Path) -> None:
    """The exploit: offline, huggingface_hub reads `refs/<revision>` joined to the cache folder, so a file
    anywhere (an upload) named as an absolute or '..' revision, holding the path of another folder, made
    that folder the pulled model."""
    client.call("pull", REPO)  # the repo is cached, as the offline lookup needs
    elsewhere = save_checkpoint(tiny_model(), tmp_path / "not-from-the-hub")
    uploaded = tmp_path / "upload"
    uploaded.write_text(str(elsewhere))
    cache_refs = hf_home / "hub" / "models--studio--tiny-wavenet" / "refs"
    climbing = os.path.relpath(uploaded, cache_refs)
    assert climbing.startswith("..")
    offline = HubClient(fake_hub.url, hf_home, tmp_path / "offline.log", offline=True)
    try:
        for revision in (str(uploaded), climbing):
            reply = offline.call("pull", REPO, revision)
            assert reply.get("error") == "HubError", f"revision {revision!r} served {reply.get('value')}"
            assert "is not a valid revision" in reply["message"]
    finally:
        offline.close()


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "feature/x_y-z", "a" * 40, " v2 "])
def test_branch_tag_and_hash_revisions_are_accepted(revision: str) -> None:
    assert check_revision(revision) == revision.strip()


@pytest.mark.parametrize("revision", ["/etc", "/tmp/gradio/upload", "../x", "refs/../../x", "a/../b", "a\\b",
                                      "C:\\x", ".hidden", "a//b", "a/", "v1.", "x.lock", "with space", "tab\tx"])
def test_revisions_that_could_act_as_paths_are_refused(revision: str) -> None:
    with pytest.raises(HubError, match="is not a valid revision"):
        check_revision(revision)


def test_push_uploads_the_checkpoint_files_with_the_token_as_bearer_only(
        client: HubClient, fake_hub: FakeHub, served: Path, tmp_path: Path) -> None:
    (served.parent / "trainer_state.bin").write_bytes(b"not part of a checkpoint")
    first = len(fake_hub.requests)
    reply = client.call("push", served, "me/pushed", TOKEN)
    assert reply == {"value": f"{fake_hub.url}/me/pushed"}
    files = fake_hub.files("me/pushed")
    for name in (CONFIG, WEIGHTS, CARD, METRICS):
        assert files[name] == (served / name).read_bytes()
    assert not any(name.endswith(".bin") for name in files)
    writes = {path: headers for method, path, headers in fake_hub.requests[first:] if method == "POST"}
    for path in ("/api/repos/create", "/api/models/me/pushed/preupload/main", "/api/models/me/pushed/commit/main"):
        assert writes[path].get("authorization") == f"Bearer {TOKEN}"


def test_push_to_a_branch_and_again_to_an_existing_repo(client: HubClient, fake_hub: FakeHub, served: Path) -> None:
    assert client.call("push", served, "me/branched", TOKEN) == {"value": f"{fake_hub.url}/me/branched"}
    reply = client.call("push", served, "me/branched", TOKEN, revision="v1")
    assert reply == {"value": f"{fake_hub.url}/me/branched/tree/v1"}
    assert fake_hub.files("me/branched", "v1")[WEIGHTS] == (served / WEIGHTS).read_bytes()


def test_push_with_a_refused_token_says_so_without_echoing_it(client: HubClient, served: Path) -> None:
    bad = "hf_WRONG_token_abcdef987654"
    reply = client.call("push", served, "me/refused", bad)
    assert reply["error"] == "HubError" and "refused the token" in reply["message"]
    assert bad not in reply["message"]


def test_push_of_a_folder_that_is_not_a_checkpoint_makes_no_request(client: HubClient, fake_hub: FakeHub,
                                                                    tmp_path: Path) -> None:
    (tmp_path / CARD).write_text("# just a card\n")
    before = len(fake_hub.requests)
    reply = client.call("push", tmp_path, "me/nothing", TOKEN)
    assert reply["error"] == "CheckpointError" and "is not a checkpoint" in reply["message"]
    empty_token = client.call("push", tmp_path, "me/nothing", "  ")
    assert empty_token["error"] == "HubError" and "needs a Hub token" in empty_token["message"]
    assert len(fake_hub.requests) == before


def test_the_token_is_not_logged_stored_or_sent_anywhere_but_the_header(client: HubClient, fake_hub: FakeHub,
                                                                         hf_home: Path, served: Path) -> None:
    replies = [client.call("push", served, "me/logged", TOKEN), client.call("push", served, "me/logged", TOKEN + "x")]
    assert "value" in replies[0] and replies[1]["error"] == "HubError"
    assert TOKEN not in json.dumps(replies) and TOKEN not in client.log.read_text()
    assert not any(TOKEN in path for _, path, _ in fake_hub.requests)
    assert not [p for p in hf_home.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("config", [
    {"model_type": "wayback", "layout": "wayback", "sampling_frequency": 8000, "layer_sizes": [8, 8],
     "periods": [1, 2], "boundaries": [2, 2], "chunk_size": 2, "io_sizes": [8]},
    {"model_type": "vrnn", "latent_size": 8},
])
def test_a_recurrent_familys_checkpoint_goes_to_the_hub_and_back_unchanged(
        client: HubClient, fake_hub: FakeHub, config: dict, tmp_path: Path) -> None:
    from core.models import build_model, model_class

    torch.manual_seed(1)
    family = model_class(config["model_type"])
    model = build_model(family.config_class(**{k: v for k, v in config.items() if k != "model_type"}))
    folder = save_checkpoint(model, tmp_path / config["model_type"])
    repo = f"me/tiny-{config['model_type']}"
    assert client.call("push", folder, repo, TOKEN) == {"value": f"{fake_hub.url}/{repo}"}
    pulled = load_checkpoint(Path(client.call("pull", repo)["value"]))
    assert type(pulled) is type(model) and pulled.config == model.config
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(pulled.state_dict()[name], tensor, rtol=0, atol=0)
