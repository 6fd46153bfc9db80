"""The pause image packer (tools/pause/pack.py): a docker-archive that ctr can import, the same every time."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from pause import pack


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_archive_names_the_reference_and_runs_the_binary() -> None:
    files = members(pack.pack(binary=b"\x7fELF fake", reference="localkube.invalid/pause:1"))
    (manifest,) = json.loads(files["manifest.json"])
    assert manifest["RepoTags"] == ["localkube.invalid/pause:1"]
    config = json.loads(files[manifest["Config"]])
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65535:65535"
    (layer_name,) = manifest["Layers"]
    layer = files[layer_name]
    # The config's diff_id is the layer's digest, and its name is its own digest: what importers verify.
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert manifest["Config"] == hashlib.sha256(files[manifest["Config"]]).hexdigest() + ".json"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        (entry,) = tar.getmembers()
        assert (entry.name, entry.mode, entry.mtime) == ("pause", 0o755, 0)


def test_the_same_binary_gives_the_same_archive() -> None:
    first = pack.pack(binary=b"same", reference="r/p:1")
    assert pack.pack(binary=b"same", reference="r/p:1") == first
    assert pack.pack(binary=b"other", reference="r/p:1") != first
