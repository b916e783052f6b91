"""Manifests, atomic publish and skip-if-up-to-date."""

from __future__ import annotations

import json

import pytest

from dreamgym_cli.artifacts import ArtifactRun, content_hash, read_manifest


def _write_dir(run: ArtifactRun, text: str) -> None:
    (run.tmp / "out.txt").write_text(text)


def test_dir_artifact_has_full_manifest(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("abc")
    out = tmp_path / "A"
    with ArtifactRun("demo", out, {"lr": 0.1}, inputs={"data": src}) as run:
        assert not run.up_to_date
        _write_dir(run, "hello")
        manifest = run.commit(metrics={"loss": 1.5})
    on_disk = read_manifest(out)
    assert on_disk == json.loads(json.dumps(manifest, default=str))
    for key in ("stage", "config", "inputs", "outputs", "metrics", "versions", "git_revision",
                "started_at", "finished_at", "fingerprint"):
        assert key in on_disk
    assert on_disk["inputs"]["data"]["sha256"] == content_hash(src)
    assert on_disk["outputs"] == ["out.txt"]
    assert "torch" in on_disk["versions"] and "python" in on_disk["versions"]
    assert not list(tmp_path.glob(".A.tmp-*"))


def test_unchanged_inputs_skip_changed_inputs_redo(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("abc")
    out = tmp_path / "A"
    with ArtifactRun("demo", out, {"lr": 0.1}, inputs={"data": src}) as run:
        _write_dir(run, "v1")
        run.commit()
    with ArtifactRun("demo", out, {"lr": 0.1}, inputs={"data": src}) as run:
        assert run.up_to_date
    with ArtifactRun("demo", out, {"lr": 0.1}, inputs={"data": src}, force=True) as run:
        assert not run.up_to_date
        _write_dir(run, "v2")
        run.commit()
    assert (out / "out.txt").read_text() == "v2"
    with ArtifactRun("demo", out, {"lr": 0.2}, inputs={"data": src}) as run:
        assert not run.up_to_date  # config changed
    src.write_text("abd")
    with ArtifactRun("demo", out, {"lr": 0.1}, inputs={"data": src}) as run:
        assert not run.up_to_date  # input content changed


def test_tampered_output_is_not_up_to_date(tmp_path):
    out = tmp_path / "A"
    with ArtifactRun("demo", out, {}) as run:
        _write_dir(run, "v1")
        run.commit()
    (out / "out.txt").write_text("edited by hand")
    with ArtifactRun("demo", out, {}) as run:
        assert not run.up_to_date


def test_crash_leaves_previous_artifact_untouched(tmp_path):
    out = tmp_path / "A"
    with ArtifactRun("demo", out, {"v": 1}) as run:
        _write_dir(run, "good")
        run.commit()
    with pytest.raises(RuntimeError):
        with ArtifactRun("demo", out, {"v": 2}) as run:
            _write_dir(run, "half")
            raise RuntimeError("killed midway")
    assert (out / "out.txt").read_text() == "good"
    assert read_manifest(out)["config"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["A"]


def test_file_artifact_manifest_beside_file(tmp_path):
    out = tmp_path / "E.jsonl"
    with ArtifactRun("collect", out, {"n": 1}, kind="file") as run:
        run.tmp.write_text("{}\n")
        run.commit(metrics={"episodes": 1})
    assert out.read_text() == "{}\n"
    manifest = json.loads((tmp_path / "E.jsonl.manifest.json").read_text())
    assert manifest["metrics"] == {"episodes": 1} and manifest["outputs"] == ["E.jsonl"]
    with ArtifactRun("collect", out, {"n": 1}, kind="file") as run:
        assert run.up_to_date
    out.write_text("changed\n")
    with ArtifactRun("collect", out, {"n": 1}, kind="file") as run:
        assert not run.up_to_date


def test_content_hash_of_directory_tracks_contents(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_text("1")
    h1 = content_hash(d)
    (d / "a").write_text("2")
    assert content_hash(d) != h1
