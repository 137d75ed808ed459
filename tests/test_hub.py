"""Models by their Hugging Face Hub id, with no network: a Hub cache in a temporary HF_HUB_CACHE, in the layout
huggingface_hub writes (models--owner--name/{blobs,refs,snapshots}), made from the bundled MiniLM, read by the
real huggingface_hub client in a subprocess: by id, by tag and by commit, offline, with the network
unreachable, with a file missing, and for a model that is not there."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastembed_rt.hub import PICKLE_WEIGHTS, READ_PATTERNS

REPO_ID = "fastembed-test/minilm"
MAIN = "a" * 40
TAGGED = "b" * 40


def repo_files(source, skip=()) -> dict:
    """{relative path: bytes} of a model folder, as a Hub repository would hold it (no hidden or cache folders)."""
    return {str(p.relative_to(source)): p.read_bytes() for p in sorted(source.rglob("*"))
            if p.is_file() and str(p.relative_to(source)) not in skip and not p.relative_to(source).parts[0].startswith((".", "__"))}  # fmt: skip


def write_snapshot(cache, repo_id: str, commit: str, source, refs: tuple[str, ...], skip: tuple[str, ...] = ()) -> None:
    """The files of `source` as huggingface_hub caches them: content-addressed blobs, a snapshot folder of
    relative symlinks to them, and refs naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for relative, data in repo_files(source, skip).items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, minilm_path):
    cache = tmp_path_factory.mktemp("hub_cache")
    write_snapshot(cache, REPO_ID, MAIN, minilm_path, ("main",))
    write_snapshot(cache, REPO_ID, TAGGED, minilm_path, ("v1.0",))
    write_snapshot(cache, "fastembed-test/broken", MAIN, minilm_path, ("main",), skip=("model.safetensors",))
    return cache


def run(cache, code: str, offline: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    else:  # a network that refuses every connection
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300)


LOAD = """
    import json, sys
    import numpy as np
    import fastembed_rt
    model = fastembed_rt.load({name!r}, revision={revision!r})
    vector = model.encode(["a Hub model, read from the cache"])[0]
    print(json.dumps({{"repo": model.spec.hub.repo_id, "commit": model.spec.hub.commit, "path": str(model.spec.path),
                       "vector": vector.tolist()}}))
"""


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "network-unreachable"])
@pytest.mark.parametrize("revision,commit", [(None, MAIN), ("v1.0", TAGGED), (TAGGED, TAGGED)], ids=["main", "tag", "commit"])
def test_a_model_loads_by_its_hub_id_from_the_cache(hub_cache, minilm, offline, revision, commit):
    result = run(hub_cache, LOAD.format(name=REPO_ID, revision=revision), offline)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert (loaded["repo"], loaded["commit"]) == (REPO_ID, commit)
    assert loaded["path"] == str(hub_cache / "models--fastembed-test--minilm" / "snapshots" / commit)
    np.testing.assert_allclose(loaded["vector"], minilm.encode(["a Hub model, read from the cache"])[0], atol=1e-6)
    if revision == commit:  # a cached commit is read without a request (the client retried the refusals for ~25 s)
        assert "127.0.0.1:9" not in result.stderr, result.stderr[-2000:]


def test_a_model_not_in_the_cache_says_how_to_get_it(hub_cache):
    result = run(hub_cache, LOAD.format(name="fastembed-test/absent", revision=None))
    assert result.returncode != 0
    assert "model 'fastembed-test/absent' is no local directory, is not in the Hugging Face cache" in result.stderr
    assert "fastembed-rt download fastembed-test/absent" in result.stderr
    result = run(hub_cache, LOAD.format(name=REPO_ID, revision="v9"))
    assert "model 'fastembed-test/minilm' at revision 'v9' is no local directory, is not in the Hugging Face cache" in result.stderr


def test_a_snapshot_missing_its_weights_is_named(hub_cache):
    result = run(hub_cache, LOAD.format(name="fastembed-test/broken", revision=None))
    assert result.returncode != 0
    assert "no weights in" in result.stderr and f"models--fastembed-test--broken/snapshots/{MAIN}" in result.stderr


def test_the_cli_takes_hub_ids_and_the_manifest_records_id_and_commit(hub_cache, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one line\nanother line\n")
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "fastembed_rt.cli"]
    result = subprocess.run([*cli, "embed", str(source), "--model", REPO_ID, "--revision", "v1.0", "--out", str(tmp_path / "job"),
                             "--quiet"], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    assert (manifest["hub_id"], manifest["hub_commit"]) == (REPO_ID, TAGGED)
    result = subprocess.run([*cli, "download", REPO_ID], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{REPO_ID} at commit {MAIN}: {hub_cache / 'models--fastembed-test--minilm' / 'snapshots' / MAIN}"
    result = subprocess.run([*cli, "download", "fastembed-test/absent"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0 and "is no local directory, is not in the Hugging Face cache" in result.stderr


def test_only_what_is_read_is_downloaded_and_never_code():
    from huggingface_hub.utils import filter_repo_objects

    files = ["config.json", "tokenizer.json", "tokenizer_config.json", "modules.json", "1_Pooling/config.json",
             "2_Dense/config.json", "2_Dense/model.safetensors", "model.safetensors", "model.safetensors.index.json",
             "model-00001-of-00002.safetensors", "pytorch_model.bin", "modeling_custom.py", "configuration_custom.py",
             "onnx/model.onnx", "openvino/openvino_model.bin", "vocab.txt", "README.md", "tf_model.h5"]  # fmt: skip
    read = set(filter_repo_objects(files, allow_patterns=READ_PATTERNS))
    assert read == {"config.json", "tokenizer.json", "tokenizer_config.json", "modules.json", "1_Pooling/config.json",
                    "2_Dense/config.json", "2_Dense/model.safetensors", "model.safetensors", "model.safetensors.index.json",
                    "model-00001-of-00002.safetensors"}  # fmt: skip
    fallback = set(filter_repo_objects(files, allow_patterns=READ_PATTERNS + PICKLE_WEIGHTS)) - read
    assert fallback == {"pytorch_model.bin"}  # only where a folder has no safetensors


def test_remote_code_is_never_run_and_named_when_needed(tmp_path, minilm_path):
    import shutil

    import fastembed_rt

    model = shutil.copytree(minilm_path, tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    auto_map = {"AutoModel": "modeling_custom.CustomModel"}
    (model / "modeling_custom.py").write_text("raise SystemExit('remote code ran')\n")
    (model / "config.json").write_text(json.dumps({**config, "auto_map": auto_map}))
    assert fastembed_rt.load(model).encode(["still our own BERT"]).shape == (1, 384)  # model_type bert: ours
    (model / "config.json").write_text(json.dumps({**config, "model_type": "custom_bert", "auto_map": auto_map}))
    with pytest.raises(ValueError, match=r"model_type='custom_bert'; its config points at remote code \(modeling_custom.CustomModel\), "
                                         "which fastembed_rt never runs"):  # fmt: skip
        fastembed_rt.load(model)


class FakeHub:
    """A Hugging Face Hub on loopback, as much of its HTTP API as huggingface_hub's snapshot_download uses: repo
    info by revision, the recursive file tree, and files by commit (HEAD for metadata, GET for bytes). Repositories
    are {repo_id: (commit, {path: bytes})}; `gated` ones answer 403 GatedRepo. Every file request is logged. A
    file in `interrupt` breaks off halfway the first time it is sent; byte ranges are served, as the Hub does. Every
request's path is in `calls`."""

    def __init__(self, repos: dict, gated: tuple[str, ...] = ()):
        import http.server
        import threading

        self.repos, self.gated, self.requested, self.interrupt, self.calls = repos, gated, [], set(), []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def send(self, status, body=b"", headers=None, head=False):
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def error(self, status, code):
                self.send(status, json.dumps({"error": code}).encode(), {"X-Error-Code": code, "Content-Type": "application/json"})

            def answer(self, head):
                from urllib.parse import unquote, urlsplit

                hub.calls.append(self.path)
                parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
                api = parts[0] == "api"
                repo_id = "/".join(parts[2:4] if api else parts[0:2])
                if repo_id in hub.gated:
                    return self.error(403, "GatedRepo")
                if repo_id not in hub.repos:
                    return self.error(401, "RepoNotFound")
                commit, files = hub.repos[repo_id]
                if api and parts[4] == "revision":
                    if parts[5] not in ("main", commit):
                        return self.error(404, "RevisionNotFound")
                    body = {"id": repo_id, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
                    return self.send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
                if api and parts[4] == "tree":
                    tree = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for f, b in files.items()]
                    return self.send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"})
                path = "/".join(parts[4:])  # owner/name/resolve/commit/path
                if path not in files:
                    return self.error(404, "EntryNotFound")
                hub.requested.append(path)
                data = files[path]
                headers = {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
                first = int(self.headers.get("Range", "bytes=0-").removeprefix("bytes=").split("-")[0] or 0)
                if not head and path in hub.interrupt:  # half the file, then the connection drops
                    hub.interrupt.discard(path)
                    self.send_response(200)
                    for k, v in {**headers, "Content-Length": str(len(data))}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                if first:
                    headers["Content-Range"] = f"bytes {first}-{len(data) - 1}/{len(data)}"
                    return self.send(206, data[first:], headers, head=head)
                self.send(200, data, headers, head=head)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def fake_hub(minilm_path):
    import torch

    files = repo_files(minilm_path)
    files["modeling_custom.py"] = b"raise SystemExit('remote code ran')\n"
    pickled = repo_files(minilm_path, skip=("model.safetensors",))
    from safetensors.torch import load_file

    buffer = __import__("io").BytesIO()
    torch.save(load_file(minilm_path / "model.safetensors"), buffer)
    pickled["pytorch_model.bin"] = buffer.getvalue()
    hub = FakeHub({REPO_ID: (MAIN, files), "fastembed-test/pickled": (TAGGED, pickled), "fastembed-test/gated": (MAIN, files)},
                  gated=("fastembed-test/gated",))  # fmt: skip
    yield hub
    hub.close()


def run_online(hub, cache, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300)


def test_a_hub_model_is_downloaded_once_what_is_read_only_then_works_offline(fake_hub, tmp_path, minilm):
    cache = tmp_path / "cache"
    result = run_online(fake_hub, cache, LOAD.format(name=REPO_ID, revision=None))
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["commit"] == MAIN and loaded["path"] == str(cache / "models--fastembed-test--minilm" / "snapshots" / MAIN)
    np.testing.assert_allclose(loaded["vector"], minilm.encode(["a Hub model, read from the cache"])[0], atol=1e-6)
    fetched = set(fake_hub.requested)
    assert "model.safetensors" in fetched and "1_Pooling/config.json" in fetched and "tokenizer.json" in fetched
    assert not any(f.endswith((".py", ".txt", ".bin", ".md")) for f in fetched), fetched  # never code, nothing unread
    fake_hub.requested.clear()
    assert run(cache, LOAD.format(name=REPO_ID, revision=None)).returncode == 0  # offline now: from the cache
    assert fake_hub.requested == []


def test_a_cached_commit_is_read_without_asking_the_hub(fake_hub, tmp_path):
    """A commit never changes, so its complete snapshot needs no request; a branch may move and is asked; a commit
    whose cached snapshot lacks its weights is downloaded again."""
    cache = tmp_path / "cache"
    assert run_online(fake_hub, cache, LOAD.format(name=REPO_ID, revision=None)).returncode == 0
    fake_hub.calls.clear()
    result = run_online(fake_hub, cache, LOAD.format(name=REPO_ID, revision=MAIN))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["commit"] == MAIN
    assert fake_hub.calls == []
    assert run_online(fake_hub, cache, LOAD.format(name=REPO_ID, revision="main")).returncode == 0
    assert fake_hub.calls
    (cache / "models--fastembed-test--minilm" / "snapshots" / MAIN / "model.safetensors").unlink()
    fake_hub.requested.clear()
    result = run_online(fake_hub, cache, LOAD.format(name=REPO_ID, revision=MAIN))
    assert result.returncode == 0, result.stderr
    assert fake_hub.requested == ["model.safetensors"]


def test_an_interrupted_download_is_resumed_and_the_cache_stays_consistent(fake_hub, tmp_path, minilm):
    cache = tmp_path / "cache"
    fake_hub.interrupt.add("model.safetensors")
    fake_hub.requested.clear()
    result = run_online(fake_hub, cache, LOAD.format(name=REPO_ID, revision=None))
    assert result.returncode == 0, result.stderr
    assert fake_hub.requested.count("model.safetensors") >= 2 and not fake_hub.interrupt  # broken off, then resumed
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(loaded["vector"], minilm.encode(["a Hub model, read from the cache"])[0], atol=1e-6)
    assert not list(cache.rglob("*.incomplete"))


def test_pickled_weights_are_fetched_only_where_no_safetensors_exist(fake_hub, tmp_path, minilm):
    fake_hub.requested.clear()
    result = run_online(fake_hub, tmp_path / "cache", LOAD.format(name="fastembed-test/pickled", revision=None))
    assert result.returncode == 0, result.stderr
    assert "pytorch_model.bin" in fake_hub.requested  # read with torch.load(weights_only=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(loaded["vector"], minilm.encode(["a Hub model, read from the cache"])[0], atol=1e-6)


@pytest.mark.parametrize("name,revision,message", [
    ("fastembed-test/gated", None, "fastembed-test/gated is a gated model: accept its terms on "
                                   "https://huggingface.co/fastembed-test/gated and set HF_TOKEN"),
    ("fastembed-test/nothing-here", None, "no model 'fastembed-test/nothing-here' on the Hugging Face Hub (or it is "
                                          "private: set HF_TOKEN), and no such local directory"),
    (REPO_ID, "no-such-branch", "fastembed-test/minilm has no revision 'no-such-branch' (a branch, tag or commit)"),
])  # fmt: skip
def test_hub_refusals_give_one_clear_message(fake_hub, tmp_path, name, revision, message):
    result = run_online(fake_hub, tmp_path / "cache", LOAD.format(name=name, revision=revision))
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1]


def test_download_to_a_local_dir_for_an_air_gapped_machine(fake_hub, tmp_path, minilm):
    target = tmp_path / "carry"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_ENDPOINT": fake_hub.url}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run([sys.executable, "-m", "fastembed_rt.cli", "download", REPO_ID, "--local-dir", str(target)],
                            capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{REPO_ID} at commit {MAIN}: {target}"
    assert not list(target.glob("*.py"))
    import fastembed_rt

    np.testing.assert_allclose(fastembed_rt.load(target).encode(["carried"]), minilm.encode(["carried"]), atol=1e-6)


def test_a_revision_for_a_local_directory_is_refused(minilm_path):
    import fastembed_rt

    with pytest.raises(ValueError, match="revision 'v1.0' applies to Hugging Face Hub ids; .* is a local directory"):
        fastembed_rt.load(minilm_path, revision="v1.0")
