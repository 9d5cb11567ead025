"""Custom providers (registry call and entry point), local and pkg:// sources, unknown schemes."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from kubetune.errors import ConfigError, FetchError
from kubetune.initializers import (
    DatasetProvider,
    Listing,
    RemoteFile,
    register_provider,
    run_initializer,
    unregister_provider,
)
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer

from .servers import run_cli


class GeneratedRowsProvider(DatasetProvider):
    """A dataset scheme ``rows://<n>`` that writes n generated JSONL rows (a custom source)."""

    def _content(self) -> bytes:
        count = int(self.location.location)
        return "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(count)).encode()

    def list_files(self) -> Listing:
        data = self._content()
        file = RemoteFile(path="train.jsonl", size=len(data), sha256=hashlib.sha256(data).hexdigest())
        return Listing(version=self.location.location, files=[file])

    def download(self, file, dest, scratch, progress) -> None:
        data = self._content()
        dest.write_bytes(data)
        progress.advance(len(data))


@pytest.fixture
def rows_scheme():
    register_provider("rows", GeneratedRowsProvider)
    yield "rows"
    unregister_provider("rows")


def test_registered_custom_provider_is_used_end_to_end(rows_scheme, tmp_path):
    result = run_initializer(DatasetInitializer(storage_uri="rows://5"), tmp_path / "run" / "dataset", tmp_path / "c")
    lines = (tmp_path / "run" / "dataset" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line)["text"] for line in lines] == [f"row {i}" for i in range(5)]
    assert not result.cache_hit
    assert run_initializer(DatasetInitializer(storage_uri="rows://5"), tmp_path / "d2", tmp_path / "c").cache_hit


def test_provider_serves_only_the_kinds_it_subclasses(rows_scheme, tmp_path):
    with pytest.raises(FetchError, match="the rows:// provider GeneratedRowsProvider cannot fetch a model"):
        run_initializer(ModelInitializer(storage_uri="rows://5"), tmp_path / "m", tmp_path / "c")


def test_register_rejects_classes_that_are_not_providers():
    with pytest.raises(ConfigError, match="must subclass ModelProvider or DatasetProvider"):
        register_provider("bogus", dict)  # type: ignore[arg-type]


def test_entry_point_provider_is_found_by_scheme_from_the_cli(tmp_path):
    """A plugin distribution on sys.path declaring a ``kubetune.providers`` entry point."""
    site = tmp_path / "site"
    (site / "gen_plugin").mkdir(parents=True)
    (site / "gen_plugin" / "__init__.py").write_text(
        textwrap.dedent(
            """
            from kubetune.initializers import Listing, ModelProvider, RemoteFile

            class GenModel(ModelProvider):
                def list_files(self):
                    return Listing(version="1", files=[RemoteFile(path="config.json", size=2)])

                def download(self, file, dest, scratch, progress):
                    dest.write_bytes(b"{}")
                    progress.advance(2)
            """
        )
    )
    dist_info = site / "gen_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: gen-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[kubetune.providers]\ngen = gen_plugin:GenModel\n")
    sys.path.insert(0, str(site))
    try:
        assert any(ep.name == "gen" for ep in metadata.entry_points(group="kubetune.providers"))
    finally:
        sys.path.remove(str(site))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ["PYTHONPATH"]])}
    proc = run_cli(
        ["model", "--uri", "gen://anything", "--target", str(tmp_path / "model"), "--cache-dir", str(tmp_path / "c")],
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model" / "config.json").read_bytes() == b"{}"


def test_unknown_scheme_is_one_line_error_with_exit_code_2(tmp_path):
    proc = run_cli(
        ["model", "--uri", "nope://a/b", "--target", str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c")]
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: nope://a/b: unknown storage scheme 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "entries").exists() or not list((tmp_path / "c" / "entries").iterdir())


def test_local_folder_copies_files_and_refuses_symlinks_leaving_it(tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.jsonl").write_text('{"text": "a"}\n')
    (source / "link.jsonl").symlink_to(source / "sub" / "a.jsonl")  # inside: followed
    result = run_initializer(DatasetInitializer(storage_uri=str(source)), tmp_path / "ds", tmp_path / "c")
    assert sorted(p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*.jsonl")) == [
        "link.jsonl",
        "sub/a.jsonl",
    ]
    assert not Path(result.entry / "link.jsonl").is_symlink()
    outside = tmp_path / "secret.txt"
    outside.write_text("outside")
    (source / "escape.txt").symlink_to(outside)
    with pytest.raises(FetchError, match="is a symlink pointing outside"):
        run_initializer(DatasetInitializer(storage_uri=f"file://{source}"), tmp_path / "ds2", tmp_path / "c")


def test_missing_local_path_names_it(tmp_path):
    with pytest.raises(FetchError, match=r"nowhere: no such file or folder"):
        run_initializer(ModelInitializer(storage_uri=str(tmp_path / "nowhere")), tmp_path / "m", tmp_path / "c")


def test_pkg_uri_is_a_provider(tmp_path):
    uri = "pkg://pydantic/pydantic/__init__.py"  # any installed distribution's file
    result = run_initializer(DatasetInitializer(storage_uri=uri), tmp_path / "ds", tmp_path / "c")
    assert result.files == 1 and (tmp_path / "ds" / "__init__.py").is_file()
    with pytest.raises(ConfigError, match="is not installed"):
        run_initializer(DatasetInitializer(storage_uri="pkg://no-such-dist-kt/x"), tmp_path / "d2", tmp_path / "c")
