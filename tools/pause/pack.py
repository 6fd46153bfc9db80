"""Packs one static binary as a one-layer image in docker-archive format (what ``docker save`` writes).

For: the real node's pause image, which must be importable with ``ctr images import`` on a machine with
no container engine. Must not: read anything but the binary, or depend on the clock or file owners, so
the same binary always gives the same archive (and the same image ID).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path


def _tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes, *, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0  # reproducible: no build time in the layer
    return info, data


def pack(*, binary: bytes, reference: str, entrypoint: str = "/pause") -> bytes:
    layer = _tar_bytes([_file(entrypoint.lstrip("/"), binary, mode=0o755)])
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            # 65535: the pause process needs no privileges, and a numeric user needs no /etc/passwd.
            "config": {"Entrypoint": [entrypoint], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": [layer_name]}]).encode()
    return _tar_bytes(
        [_file(config_name, config), _file(layer_name, layer), _file("manifest.json", manifest)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--reference", required=True, help="the image name, e.g. localkube.invalid/pause:1")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.write_bytes(pack(binary=args.binary.read_bytes(), reference=args.reference))


if __name__ == "__main__":
    main()
