"""extract: true: .tar/.tar.gz/.zip sources unpacked into the cache entry, unsafe members refused."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import uuid
import zipfile
from pathlib import Path
from unittest.mock import ANY

import pytest

from kubetune.errors import FetchError
from kubetune.initializers import run as run_module
from kubetune.initializers import run_initializer
from kubetune.spec.initializer import DatasetInitializer

from .servers import ROWS, S3_REGION, run_cli, train_on_initialized_run

JSONL = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def write_tar(path: Path, members: list[tuple], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def write_zip(path: Path, members: list[tuple[str, bytes]], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (following a root symlink) with its bytes; fails on a symlink inside."""
    out = {}
    for path in sorted(root.resolve().rglob("*")):
        assert not path.is_symlink(), path
        if path.is_file():
            out[path.relative_to(root.resolve()).as_posix()] = path.read_bytes()
    return out


def assert_no_entry(cache: Path, target: Path) -> None:
    assert not list((cache / "entries").iterdir())
    assert not list((cache / "staging").iterdir())
    assert not target.exists() and not target.is_symlink()


def test_tar_gz_made_by_tar_add_unpacks_with_links_as_copies_through_the_cli(tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "notes.txt").write_bytes(b"notes\n")
    (source / "train.jsonl").write_bytes(JSONL)
    os.link(source / "train.jsonl", source / "sub" / "copy.jsonl")  # becomes a hard link member
    (source / "latest.jsonl").symlink_to("train.jsonl")  # a symlink member inside the archive
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=".")  # members "./", "./sub/", ... as `tar -C src .` makes them
    with tarfile.open(archive) as tar:
        kinds = {m.name: m.type for m in tar.getmembers()}
    assert tarfile.LNKTYPE in kinds.values() and tarfile.SYMTYPE in kinds.values()

    args = ["dataset", "--uri", str(archive), "--target", str(tmp_path / "run" / "dataset"), "--extract"]
    first = run_cli([*args, "--cache-dir", str(tmp_path / "c")])
    assert first.returncode == 0, first.stderr
    expected = {"latest.jsonl": JSONL, "sub/copy.jsonl": JSONL, "sub/notes.txt": b"notes\n", "train.jsonl": JSONL}
    assert tree(tmp_path / "run" / "dataset") == expected
    summary = json.loads(first.stdout)
    assert (summary["cache_hit"], summary["files"], summary["total_bytes"]) == (False, 4, 3 * len(JSONL) + 6)
    assert "unpacked data.tar.gz: 4 files" in first.stderr

    second = run_cli([*args, "--cache-dir", str(tmp_path / "c"), "--materialize", "copy"])
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["cache_hit"] is True
    assert tree(tmp_path / "run" / "dataset") == {**expected, ".kubetune-entry": ANY}


def test_archives_in_a_folder_unpack_next_to_the_other_files(tmp_path):
    source = tmp_path / "src"
    (source / "shards").mkdir(parents=True)
    (source / "readme.txt").write_bytes(b"read me")
    write_zip(source / "a.zip", [("x.txt", b"x" * 1000), ("d/y.txt", b"y")])
    write_tar(source / "shards" / "b.tar", [member("z.bin", os.urandom(4096))], mode="w")
    with tarfile.open(source / "shards" / "b.tar") as tar:
        z = tar.extractfile("z.bin").read()
    spec = DatasetInitializer(storage_uri=str(source), extract=True)
    result = run_initializer(spec, tmp_path / "dataset", tmp_path / "c")
    assert tree(tmp_path / "dataset") == {
        "a/d/y.txt": b"y",
        "a/x.txt": b"x" * 1000,
        "readme.txt": b"read me",
        "shards/b/z.bin": z,
    }
    assert result.files == 4
    plain = run_initializer(DatasetInitializer(storage_uri=str(source)), tmp_path / "packed", tmp_path / "c")
    assert plain.key != result.key and sorted(tree(tmp_path / "packed")) == ["a.zip", "readme.txt", "shards/b.tar"]


OK = member("ok.txt", b"fine")
BAD_TAR_MEMBERS = [
    ([member("../evil.txt", b"evil")], "'../evil.txt': its path would escape the target folder"),
    ([member("/abs/evil.txt", b"evil")], "'/abs/evil.txt': its path would escape the target folder"),
    ([member("sub/../../evil.txt", b"evil")], "'sub/../../evil.txt': its path would escape the target folder"),
    ([member("C:/evil.txt", b"evil")], "'C:/evil.txt': its path would escape the target folder"),
    (
        [member("passwd", kind=tarfile.SYMTYPE, linkname="/etc/passwd")],
        "'passwd': a symlink to '/etc/passwd', outside the archive",
    ),
    (
        [member("sub/up", kind=tarfile.SYMTYPE, linkname="../../evil.txt")],
        "'sub/up': a symlink to '../../evil.txt', outside the archive",
    ),
    (
        [member("hl", kind=tarfile.LNKTYPE, linkname="../../etc/passwd")],
        "'hl': a hard link to '../../etc/passwd', outside the archive",
    ),
    (
        [member("hl", kind=tarfile.LNKTYPE, linkname="/etc/passwd")],
        "'hl': a hard link to '/etc/passwd', outside the archive",
    ),
    ([member("null", kind=tarfile.CHRTYPE)], "'null': it is a device file, FIFO or other special file"),
    ([member("pipe", kind=tarfile.FIFOTYPE)], "'pipe': it is a device file, FIFO or other special file"),
    (
        [member("d", kind=tarfile.DIRTYPE), member("to-dir", kind=tarfile.SYMTYPE, linkname="d")],
        "'to-dir': a symlink to 'd', which is not a file in the archive",
    ),
    (
        [member("a", kind=tarfile.SYMTYPE, linkname="b"), member("b", kind=tarfile.SYMTYPE, linkname="a")],
        "'a': a chain of links too long (a loop?)",
    ),
]


@pytest.mark.parametrize(("members", "reason"), BAD_TAR_MEMBERS, ids=[r.split("'")[1] for _, r in BAD_TAR_MEMBERS])
def test_unsafe_tar_members_are_refused_and_leave_nothing(tmp_path, members, reason):
    archive = write_tar(tmp_path / "bad.tar.gz", [OK, *members, member("zz.txt", b"after")])
    cache, target = tmp_path / "c", tmp_path / "run" / "dataset"
    with pytest.raises(FetchError) as err:
        run_initializer(DatasetInitializer(storage_uri=str(archive), extract=True), target, cache)
    assert str(err.value) == f"dataset {archive}: archive bad.tar.gz: refusing member {reason}"
    assert_no_entry(cache, target)
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("ok.txt"))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.txt", "its path would escape the target folder"),
        ("/abs.txt", "its path would escape the target folder"),
        ("C:/evil.txt", "its path would escape the target folder"),
        ("..\\evil.txt", "its path would escape the target folder"),
        ("link", "a symlink to '/etc/passwd', outside the archive"),
    ],
)
def test_unsafe_zip_members_are_refused_through_the_cli(tmp_path, name, reason):
    archive = tmp_path / "bad.zip"
    if name == "link":
        write_zip(archive, [("ok.txt", b"fine")], symlinks={"link": "/etc/passwd"})
    else:
        write_zip(archive, [("ok.txt", b"fine"), (name, b"evil")])
    assert name in zipfile.ZipFile(archive).namelist()  # stored verbatim
    cache, target = tmp_path / "c", tmp_path / "run" / "dataset"
    proc = run_cli(["dataset", "--uri", str(archive), "--target", str(target), "--cache-dir", str(cache), "--extract"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: dataset {archive}: archive bad.zip: refusing member {name!r}: {reason}"
    )
    assert "Traceback" not in proc.stderr
    assert_no_entry(cache, target)
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("ok.txt"))


def test_archive_bomb_beyond_the_cap_or_free_disk_is_refused(tmp_path, monkeypatch):
    archive = write_tar(tmp_path / "bomb.tar.gz", [member("zeros.bin", bytes(64 << 20))])
    assert archive.stat().st_size < 1 << 20  # 64 MiB of zeros compress to little
    cache, target = tmp_path / "c", tmp_path / "dataset"
    capped = DatasetInitializer(storage_uri=str(archive), extract=True, extract_max_bytes=16 << 20)
    with pytest.raises(FetchError) as err:
        run_initializer(capped, target, cache)
    assert str(err.value) == (
        f"dataset {archive}: archive bomb.tar.gz: unpacks to more than extract_max_bytes (16.0 MiB); refusing it"
    )
    assert_no_entry(cache, target)
    # Leave 8 MiB above the reserve: enough to download the archive, not to unpack it.
    monkeypatch.setattr(
        run_module, "DISK_RESERVE_BYTES", os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize - (8 << 20)
    )
    with pytest.raises(FetchError, match=r"archive bomb.tar.gz: unpacks to more than the [\d.]+ MiB free in the cache"):
        run_initializer(DatasetInitializer(storage_uri=str(archive), extract=True), target, cache)
    assert_no_entry(cache, target)


def test_member_landing_on_an_existing_file_is_refused(tmp_path):
    source = tmp_path / "src"
    (source / "shard").mkdir(parents=True)
    (source / "shard" / "a.txt").write_bytes(b"plain")
    write_tar(source / "shard.tar", [member("a.txt", b"from the archive")], mode="w")
    with pytest.raises(FetchError) as err:
        run_initializer(DatasetInitializer(storage_uri=str(source), extract=True), tmp_path / "d", tmp_path / "c")
    assert str(err.value) == (
        f"dataset {source}: member 'a.txt' of archive shard.tar would land on 'shard/a.txt', "
        "where another file or folder is"
    )
    assert_no_entry(tmp_path / "c", tmp_path / "d")


def test_corrupt_archive_and_no_archive_at_all_fail_clearly(tmp_path):
    good = write_tar(tmp_path / "x.tar.gz", [member("big.bin", os.urandom(256 << 10))])
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FetchError, match=rf"^dataset {broken}: archive broken.tar.gz: cannot be (read|unpacked) \("):
        run_initializer(DatasetInitializer(storage_uri=str(broken), extract=True), tmp_path / "d", tmp_path / "c")
    assert_no_entry(tmp_path / "c", tmp_path / "d")
    plain = tmp_path / "train.jsonl"
    plain.write_bytes(JSONL)
    with pytest.raises(FetchError, match=r"extract is set but none of the 1 selected files is an archive \(.tar.gz"):
        run_initializer(DatasetInitializer(storage_uri=str(plain), extract=True), tmp_path / "d", tmp_path / "c")


def test_tar_gz_dataset_from_s3_unpacks_byte_for_byte_and_trains(
    s3_client, s3_endpoint, smollm2_dir, tmp_path, aws_env
):

    more = "".join(json.dumps({"instruction": f"Say {uuid.uuid4().hex}.", "output": "ok"}) + "\n" for _ in range(8))
    payload = {"train.jsonl": JSONL, "more/part2.jsonl": more.encode()}
    blob = write_tar(tmp_path / "words.tar.gz", [member(name, data) for name, data in payload.items()]).read_bytes()
    bucket = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="datasets/words.tar.gz", Body=blob)
    run = tmp_path / "run"
    spec = DatasetInitializer(
        storage_uri=f"s3://{bucket}/datasets/words.tar.gz",
        s3={"endpoint_url": s3_endpoint, "region": S3_REGION},
        extract=True,
    )
    result = run_initializer(spec, run / "dataset", tmp_path / "c")
    assert tree(run / "dataset") == payload
    assert result.files == 2 and result.downloaded_bytes == len(blob)

    (run / "model").symlink_to(smollm2_dir)
    train_on_initialized_run(run)


def test_extract_max_bytes_needs_extract():
    from kubetune.errors import ConfigError
    from kubetune.spec.base import validate_config

    with pytest.raises(ConfigError, match="extract_max_bytes applies only with extract: true"):
        validate_config(DatasetInitializer, {"storage_uri": "data.tar", "extract_max_bytes": 100}, source="dataset")
