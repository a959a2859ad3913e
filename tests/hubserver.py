"""A local stand-in for the Hugging Face Hub: serves real model files in the Hub's URL layout over HTTP.

Point HF_ENDPOINT at `HubServer.url` and huggingface_hub (2.x) downloads from it exactly as from the Hub.
The endpoints are the ones huggingface_hub calls for model repos:

    GET  /api/models/{repo}[/revision/{rev}]      model_info / repo_info: sha, siblings (sizes with ?blobs=true)
    GET  /api/models/{repo}/tree/{rev}[/{path}]   list_repo_tree (what snapshot_download lists)
    HEAD /{repo}/resolve/{rev}/{file}             get_hf_file_metadata: X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{file}             the bytes (Range honoured, for resumed downloads)

Failures carry the Hub's X-Error-Code header, so huggingface_hub raises its own typed errors: an unknown
repo (or a private one without its token) is 401 RepoNotFound, as on the Hub; an unknown revision 404
RevisionNotFound, an unknown file 404 EntryNotFound. No Xet header is ever sent (X-Xet-Hash, xetHash), so
huggingface_hub takes the plain HTTP path even with hf-xet installed.

The server speaks HTTP/1.0 (one request per connection): once `stop()` returns, nothing answers on the
port, so a test can prove that a later call did not touch the network.

    with HubServer() as hub:
        commit = hub.add_repo("emocli-test/tiny-emotion", model_dir)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".pth", ".h5", ".msgpack", ".onnx", ".model")
LAST_MODIFIED = "2025-01-01T00:00:00.000Z"


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content (what the Hub reports as `oid`/`blobId`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fake_commit(files: dict[str, bytes]) -> str:
    """A 40-hex commit id that changes whenever any file name or content changes."""
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def read_model_files(model_dir: Path) -> dict[str, bytes]:
    """Every file under a model directory, keyed by its '/'-separated path in the repo."""
    model_dir = Path(model_dir)
    return {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}


@dataclass
class HubRepo:
    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha
    token: str | None = None  # a private repo: answered only with "Authorization: Bearer <token>"

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


@dataclass(frozen=True)
class Request:
    method: str
    path: str


class HubServer:
    """A threaded HTTP server on 127.0.0.1 (random port) serving repos added with `add_repo`."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- content -------------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: Path | dict[str, bytes], *, commit: str | None = None,
                 revisions: tuple[str, ...] = ("main",), token: str | None = None) -> str:
        """Publish `files` (a directory or {path: bytes}) as a commit of repo_id; each revision points at it.

        With `token` the repo is private: without that bearer token it looks missing, as on the Hub.
        """
        content = read_model_files(files) if isinstance(files, (str, Path)) else dict(files)
        commit = commit or fake_commit(content)
        if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
            raise ValueError(f"commit must be 40 lowercase hex digits, got {commit!r}")
        repo = self.repos.setdefault(repo_id, HubRepo(repo_id))
        repo.token = token or repo.token
        repo.commits[commit] = content
        for revision in revisions:
            repo.refs[revision] = commit
        return commit

    # ---- lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        handler = type("BoundHubHandler", (_HubHandler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append(Request(method, path))

    def downloads(self) -> list[str]:
        """Paths of the files fetched with GET .../resolve/..., in order."""
        return [r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in self.requests
                if r.method == "GET" and "/resolve/" in r.path]


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.0"
    server_version = "emocli-test-hub/1.0"

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output clean
        pass

    # ---- dispatch ------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def _dispatch(self, *, send_body: bool) -> None:
        url = urlsplit(self.path)
        self.hub.record(self.command, unquote(url.path))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api(parts[2] + "/" + parts[3], parts[4:], query, send_body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), send_body)
        else:
            self._error(404, "Not Found", None, send_body)

    # ---- /api/models/... -----------------------------------------------------------------------------
    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is not None and repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
            return None
        return repo

    def _api(self, repo_id: str, rest: list[str], query: dict, send_body: bool) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return self._error(401, "Repository not found", "RepoNotFound", send_body)
        if not rest:
            rest = ["revision", "main"]
        if rest[0] not in ("revision", "tree") or len(rest) < 2:
            return self._error(404, "Not Found", None, send_body)
        commit = repo.resolve(rest[1])
        if commit is None:
            return self._error(404, f"Invalid rev id: {rest[1]}", "RevisionNotFound", send_body)
        files = repo.commits[commit]
        if rest[0] == "revision":
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            return self._json(self._model_info(repo_id, commit, files, blobs, private=bool(repo.token)), send_body)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        return self._json(self._tree(files, "/".join(rest[2:]), recursive), send_body)

    @staticmethod
    def _model_info(repo_id: str, commit: str, files: dict[str, bytes], blobs: bool, *, private: bool) -> dict:
        siblings = []
        for name, data in sorted(files.items()):
            sibling: dict = {"rfilename": name}
            if blobs:
                sibling.update(size=len(data), blobId=git_blob_id(data))
                if name.endswith(LFS_SUFFIXES):
                    sibling["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(sibling)
        return {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": commit, "lastModified": LAST_MODIFIED, "createdAt": LAST_MODIFIED,
            "private": private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "library_name": "transformers", "tags": ["transformers", "safetensors", "text-classification"],
            "pipeline_tag": "text-classification", "siblings": siblings,
        }

    @staticmethod
    def _tree(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        entries: dict[str, dict] = {}
        for name, data in sorted(files.items()):
            if not name.startswith(base):
                continue
            parts = name[len(base):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "oid": git_blob_id(folder.encode()),
                                                "size": 0, "path": folder})
            if recursive or len(parts) == 1:
                entry = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": name}
                if name.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries[name] = entry
        return list(entries.values())

    # ---- /{repo}/resolve/{rev}/{file} ----------------------------------------------------------------
    def _resolve(self, repo_id: str, revision: str, filename: str, send_body: bool) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return self._error(401, "Repository not found", "RepoNotFound", send_body)
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", send_body)
        data = repo.commits[commit].get(filename)
        if data is None:
            return self._error(404, "Entry not found", "EntryNotFound", send_body, {"X-Repo-Commit": commit})
        start, end = self._byte_range(len(data))
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{filename.rsplit("/", 1)[-1]}"',
        }
        if (start, end) != (0, len(data)):
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        self._send(206 if "Content-Range" in headers else 200, data[start:end], headers, send_body)

    def _byte_range(self, size: int) -> tuple[int, int]:
        spec = self.headers.get("Range", "")
        if not spec.startswith("bytes=") or "," in spec:
            return 0, size
        first, _, last = spec[len("bytes="):].partition("-")
        if not first:  # suffix range: the last N bytes
            return max(size - int(last or 0), 0), size
        start = min(int(first), size)
        end = min(int(last) + 1, size) if last else size
        return start, max(end, start)

    # ---- responses -----------------------------------------------------------------------------------
    def _json(self, payload, send_body: bool) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"}, send_body)

    def _error(self, status: int, message: str, code: str | None, send_body: bool,
               extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers, send_body)

    def _send(self, status: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)
