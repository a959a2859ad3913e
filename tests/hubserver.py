"""A local stand-in for the Hugging Face Hub: serves real model files in the Hub's URL layout over HTTP.

Point HF_ENDPOINT at `HubServer.url` and huggingface_hub (2.x) downloads from it, and pushes to it, exactly
as with the Hub. The endpoints are the ones huggingface_hub calls for model repos:

    GET  /api/models/{repo}[/revision/{rev}]      model_info / repo_info: sha, siblings (sizes with ?blobs=true)
    GET  /api/models/{repo}/tree/{rev}[/{path}]   list_repo_tree (what snapshot_download lists)
    HEAD /{repo}/resolve/{rev}/{file}             get_hf_file_metadata: X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{file}             the bytes (Range honoured, for resumed downloads)

and, for pushes (tokens are registered with `add_user`; writes need a write token of the namespace's user
or of one of its orgs, else 401 without a known token, 403 with one):

    GET    /api/whoami-v2                             whoami: name, orgs, token role
    POST   /api/repos/create                          create_repo: 409 (with url) when it exists; the new repo
                                                      gets an initial commit with .gitattributes, as on the Hub
    DELETE /api/repos/delete                          delete_repo
    POST   /api/validate-yaml                         create_commit checks README.md's metadata first
    POST   /api/models/{repo}/preupload/{rev}         upload mode per file (lfs | regular) and the remote oid
    POST   /{repo}.git/info/lfs/objects/batch         LFS batch API (basic transfer): upload + verify actions
    PUT    /lfs-objects/{oid}                         the upload action's href (content checked against oid)
    POST   /lfs-objects/{oid}/verify                  the verify action's href
    POST   /api/models/{repo}/commit/{rev}            the NDJSON commit (header, file, lfsFile, deletedFile,
                                                      deletedFolder); ?create_pr=1 commits to refs/pr/N
    POST   /api/models/{repo}/branch/{branch}         create_branch (409 when it exists)

Xet is never offered: huggingface_hub 2.x uploads through Xet whenever hf-xet is installed, with no
negotiation, so a client pushing here must set HF_HUB_DISABLE_XET=1 to take the LFS path.

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

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".pth", ".h5", ".msgpack", ".onnx", ".model")
LFS_MIN_SIZE = 10_000_000  # the Hub stores files of 10 MB and more in LFS whatever their name
LAST_MODIFIED = "2025-01-01T00:00:00.000Z"
INITIAL_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def is_lfs(name: str, size: int, sample: bytes) -> bool:
    """LFS by name, by size, or because the content is binary (the Hub's preupload rule, simplified)."""
    return name.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample[:512]


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
class HubCommit:
    sha: str
    ref: str  # the branch (or refs/pr/N) it was committed to
    message: str
    parent: str | None


@dataclass
class HubRepo:
    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha
    token: str | None = None  # a private repo: answered only with "Authorization: Bearer <token>"
    log: list[HubCommit] = field(default_factory=list)  # commits made through the commit endpoint, in order
    pull_requests: list[str] = field(default_factory=list)  # refs/pr/1, refs/pr/2, ...

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None

    def files(self, revision: str = "main") -> dict[str, bytes]:
        return self.commits[self.resolve(revision)]


@dataclass(frozen=True)
class HubUser:
    name: str
    orgs: tuple[str, ...] = ()
    write: bool = True  # a read token can pull but not create or commit

    def can_write(self, namespace: str) -> bool:
        return self.write and (namespace == self.name or namespace in self.orgs)


@dataclass(frozen=True)
class Request:
    method: str
    path: str


class HubServer:
    """A threaded HTTP server on 127.0.0.1 (random port) serving repos added with `add_repo`."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.users: dict[str, HubUser] = {}  # token -> user
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content uploaded through the LFS batch API
        self.fail_commits: int | None = None  # an HTTP status every commit answers (a failure after upload)
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

    def add_user(self, token: str, name: str, orgs: tuple[str, ...] = (), *, write: bool = True) -> HubUser:
        """A token the server accepts: pushes may write under `name` and `orgs` (none with write=False)."""
        user = HubUser(name, tuple(orgs), write)
        self.users[token] = user
        return user

    def commit(self, repo_id: str, ref: str, files: dict[str, bytes], message: str) -> str:
        """Record files as a new commit on ref (a new sha even when the files equal an older commit's)."""
        repo = self.repos[repo_id]
        parent = repo.refs.get(ref)
        digest = hashlib.sha1(f"{parent}\0{message}\0{len(repo.log)}\0".encode() + fake_commit(files).encode())
        sha = digest.hexdigest()
        repo.commits[sha] = files
        repo.refs[ref] = sha
        repo.log.append(HubCommit(sha, ref, message, parent))
        return sha

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

    def do_POST(self) -> None:
        self._dispatch_write()

    def do_PUT(self) -> None:
        self._dispatch_write()

    def do_DELETE(self) -> None:
        self._dispatch_write()

    def _dispatch(self, *, send_body: bool) -> None:
        url = urlsplit(self.path)
        self.hub.record(self.command, unquote(url.path))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        if parts == ["api", "whoami-v2"]:
            self._whoami(send_body)
        elif parts[:2] == ["api", "models"] and len(parts) >= 4:
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
                if is_lfs(name, len(data), data):
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
                if is_lfs(name, len(data), data):
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

    # ---- pushes --------------------------------------------------------------------------------------
    def _dispatch_write(self) -> None:
        url = urlsplit(self.path)
        self.hub.record(self.command, unquote(url.path))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        body = self._read_body()
        method = self.command
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body or b"{}"))
        if method == "DELETE" and parts == ["api", "repos", "delete"]:
            return self._delete_repo(json.loads(body or b"{}"))
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(body or b"{}"))
        if method == "POST" and parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, action, revision = parts[2] + "/" + parts[3], parts[4], "/".join(parts[5:])
            handler = {"preupload": self._preupload, "commit": self._commit, "branch": self._branch}.get(action)
            if handler is not None:
                return handler(repo_id, revision, body, query)
        if method == "POST" and parts[2:] == ["info", "lfs", "objects", "batch"] and parts[1].endswith(".git"):
            return self._lfs_batch(parts[0] + "/" + parts[1][:-len(".git")], json.loads(body or b"{}"))
        if parts[:1] == ["lfs-objects"] and len(parts) >= 2:
            if method == "PUT" and len(parts) == 2:
                return self._lfs_put(parts[1], body)
            if method == "POST" and parts[2:] == ["verify"]:
                return self._lfs_verify(parts[1], json.loads(body or b"{}"))
        self._error(404, "Not Found", None, True)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else None

    def _user(self) -> HubUser | None:
        return self.hub.users.get(self._token() or "")

    def _writer(self, namespace: str) -> HubUser | None:
        """The user allowed to write under namespace, or None after answering 401 / 403."""
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header", None, True)
            return None
        if not user.can_write(namespace):
            self._error(403, f"You don't have the rights to write to {namespace}", None, True)
            return None
        return user

    def _whoami(self, send_body: bool) -> None:
        user = self._user()
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header", None, send_body)
        role = "write" if user.write else "read"
        self._json({"type": "user", "id": hashlib.md5(user.name.encode()).hexdigest()[:24], "name": user.name,
                    "fullname": user.name, "orgs": [{"type": "org", "name": org} for org in user.orgs],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": role}}},
                   send_body)

    def _repo_url(self, repo_id: str) -> str:
        return f"{self.hub.url}/{repo_id}"

    def _payload_repo(self, payload: dict) -> tuple[str, str]:
        """(namespace, repo id) of a create/delete payload: the organization, else the token's user."""
        user = self._user()
        namespace = payload.get("organization") or (user.name if user else "")
        return namespace, f"{namespace}/{payload.get('name')}"

    def _create_repo(self, payload: dict) -> None:
        namespace, repo_id = self._payload_repo(payload)
        if self._writer(namespace) is None:
            return
        if repo_id in self.hub.repos:
            return self._send(409, json.dumps({"error": "You already created this model repo",
                                               "url": self._repo_url(repo_id)}).encode(),
                              {"Content-Type": "application/json"}, True)
        private = payload.get("visibility") == "private" or payload.get("private") is True
        self.hub.repos[repo_id] = HubRepo(repo_id, token=self._token() if private else None)
        self.hub.commit(repo_id, "main", {".gitattributes": INITIAL_GITATTRIBUTES}, "initial commit")
        self._json({"url": self._repo_url(repo_id), "name": repo_id,
                    "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]}, True)

    def _delete_repo(self, payload: dict) -> None:
        namespace, repo_id = self._payload_repo(payload)
        if self._writer(namespace) is None:
            return
        if self.hub.repos.pop(repo_id, None) is None:
            return self._error(404, "Repository not found", "RepoNotFound", True)
        self._json({}, True)

    def _validate_yaml(self, payload: dict) -> None:
        """The metadata block must parse as YAML into a mapping, with a model-index huggingface_hub can read."""
        import yaml
        from huggingface_hub.repocard import REGEX_YAML_BLOCK
        from huggingface_hub.repocard_data import model_index_to_eval_results

        match = REGEX_YAML_BLOCK.search(payload.get("content", ""))
        try:
            data = yaml.safe_load(match.group(2)) if match else {}
            if not isinstance(data, dict):
                raise ValueError("the metadata block is not a mapping")
            if "model-index" in data:
                model_index_to_eval_results(data["model-index"])
        except Exception as exc:  # noqa: BLE001 - any failure is a validation error, reported like the Hub's
            return self._send(400, json.dumps({"errors": [{"message": str(exc)}], "warnings": []}).encode(),
                              {"Content-Type": "application/json", "X-Error-Message": "Invalid metadata"}, True)
        self._json({"errors": [], "warnings": []}, True)

    def _writable_repo(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound", True)
            return None
        return repo if self._writer(repo_id.split("/")[0]) is not None else None

    def _preupload(self, repo_id: str, revision: str, body: bytes, query: dict) -> None:
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", True)
        remote = repo.commits[commit]
        answers = []
        for item in json.loads(body)["files"]:
            path, size, sample = item["path"], int(item["size"]), base64.b64decode(item["sample"])
            lfs = is_lfs(path, size, sample)
            data = remote.get(path)
            oid = None if data is None else (hashlib.sha256(data).hexdigest() if lfs else git_blob_id(data))
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
        self._json({"files": answers, "commitOid": commit}, True)

    def _lfs_batch(self, repo_id: str, payload: dict) -> None:
        if self._writable_repo(repo_id) is None:
            return
        if payload.get("operation") != "upload":
            return self._error(422, "only uploads are supported", None, True)
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.hub.lfs_objects:  # content already stored: no actions, nothing to upload
                href = f"{self.hub.url}/lfs-objects/{item['oid']}"
                entry["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   {"Content-Type": "application/vnd.git-lfs+json"}, True)

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, f"content does not match oid {oid}", None, True)
        self.hub.lfs_objects[oid] = body
        self._send(200, b"", {}, True)

    def _lfs_verify(self, oid: str, payload: dict) -> None:
        data = self.hub.lfs_objects.get(oid)
        if data is None or len(data) != payload.get("size"):
            return self._error(404, f"object {oid} not found", None, True)
        self._json({}, True)

    def _branch(self, repo_id: str, branch: str, body: bytes, query: dict) -> None:
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        if branch in repo.refs:
            return self._error(409, "Reference already exists", None, True)
        start = repo.resolve(json.loads(body or b"{}").get("startingPoint") or "main")
        if start is None:
            return self._error(404, "Invalid starting point", "RevisionNotFound", True)
        repo.refs[branch] = start
        self._json({}, True)

    def _commit(self, repo_id: str, revision: str, body: bytes, query: dict) -> None:
        repo = self._writable_repo(repo_id)
        if repo is None:
            return
        base = repo.resolve(revision)
        if base is None or (revision not in repo.refs and revision != base):
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", True)
        if self.hub.fail_commits is not None:
            return self._error(self.hub.fail_commits, "commit refused (test failure)", None, True)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = dict(repo.commits[base])
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                data = self.hub.lfs_objects.get(value["oid"])
                if data is None:
                    return self._error(422, f"LFS object {value['oid']} was never uploaded", None, True)
                files[value["path"]] = data
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {name: data for name, data in files.items() if not name.startswith(prefix)}
        pr_url = None
        ref = revision
        if query.get("create_pr", ["0"])[0] == "1":
            ref = f"refs/pr/{len(repo.pull_requests) + 1}"
            repo.pull_requests.append(ref)
            repo.refs[ref] = base
            pr_url = f"{self._repo_url(repo_id)}/discussions/{len(repo.pull_requests)}"
        sha = self.hub.commit(repo_id, ref, files, header.get("summary", ""))
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{self._repo_url(repo_id)}/commit/{sha}",
                    "pullRequestUrl": pr_url}, True)

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
