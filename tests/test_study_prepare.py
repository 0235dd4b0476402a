"""`study prepare` and `study export`: sampling, stimuli on disk, catch pairs, errors, the CLI."""

from __future__ import annotations

import argparse
import csv
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops
from sqlalchemy import select

from colorizer.errors import UserError
from study.cli import register
from study.db import database_session, make_engine
from study.export import stimuli, vote_rows
from study.models import CATCH_MODEL, Trial
from study.prepare import prepare_study, wrong_hue
from tests import study_support as support
from tests.study_support import FAKE_COLORIZERS, MODEL_A, MODEL_B, STUDY, answer_all, enrol, write_photos

pytestmark = pytest.mark.timeout(120)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_stimuli_are_full_size_under_opaque_names(prepared):
    files = stimuli(prepared.db_url)
    # Every photo of the pool has both models' pictures and a degraded one (for its catch trials).
    assert len(files) == 3 * (prepared.n + prepared.catch)
    assert sum(f["model"] == CATCH_MODEL for f in files) == prepared.n + prepared.catch
    assert {f["model"] for f in files} == {MODEL_A, MODEL_B, CATCH_MODEL}
    for f in files:
        path = Path(f["path"])
        assert path.parent == prepared.media_dir.resolve() and path.is_file()
        assert re.fullmatch(r"[0-9a-f]{32}\.jpg", path.name)
        with Image.open(f["source"]) as source, Image.open(path) as stimulus:
            assert stimulus.size == source.size
    assert sorted(p.name for p in prepared.media_dir.iterdir()) == sorted(Path(f["path"]).name for f in files)


def test_catch_side_has_the_wrong_hues_and_the_same_lightness(prepared):
    from skimage.color import rgb2lab

    with database_session(prepared.db_url) as session:
        catch_trials = session.scalars(select(Trial).where(Trial.is_catch)).all()
        sides = [(trial.stimulus_a.file_name, trial.stimulus_b.file_name, trial.stimulus_b.model) for trial in catch_trials]
    assert len(sides) == prepared.n + prepared.catch
    for good_name, degraded_name, model in sides:
        assert model == CATCH_MODEL
        with Image.open(prepared.media_dir / good_name) as good, Image.open(prepared.media_dir / degraded_name) as bad:
            good_lab, bad_lab = rgb2lab(np.asarray(good.convert("RGB"))), rgb2lab(np.asarray(bad.convert("RGB")))
        assert np.abs(good_lab[..., 0] - bad_lab[..., 0]).mean() < 3  # the same lightness
        hue_turn = np.angle(np.exp(1j * (np.arctan2(bad_lab[..., 2], bad_lab[..., 1])
                                         - np.arctan2(good_lab[..., 2], good_lab[..., 1]))), deg=True)
        assert np.median(np.abs(hue_turn)) > 90  # hues far off
    photo = Image.fromarray(np.random.default_rng(0).integers(100, 156, (20, 30, 3), dtype=np.uint8))
    turned = rgb2lab(np.asarray(wrong_hue(photo, random.Random(0))))
    chroma = np.hypot(*rgb2lab(np.asarray(photo))[..., 1:].transpose(2, 0, 1))
    assert np.abs(np.hypot(*turned[..., 1:].transpose(2, 0, 1)) - chroma).mean() < 0.15 * chroma.mean()


def sampled_sources(tmp_path: Path, photos: Path, seed: int, name: str) -> list[str]:
    db_url = f"sqlite:///{tmp_path / (name + '.db')}"
    prepare_study(db_url, name, FAKE_COLORIZERS, photos, tmp_path / name, n=3, seed=seed, catch=1)
    return sorted({f["source"] for f in stimuli(db_url)})


def test_sampling_follows_the_seed(tmp_path, study_photos):
    first = sampled_sources(tmp_path, study_photos, 1, "a")
    assert sampled_sources(tmp_path, study_photos, 1, "b") == first
    assert any(sampled_sources(tmp_path, study_photos, seed, f"c{seed}") != first for seed in (2, 3, 4))


def test_unreadable_photos_are_skipped_with_a_warning(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_photos(photos, 3)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (photos / "notes.txt").write_text("not an image at all")
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, photos, tmp_path / "media", n=2, catch=1)
    assert "warning: skipping unreadable image" in capsys.readouterr().err
    assert len(stimuli(db_url)) == 3 * 3  # two models and a degraded picture per photo


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n": 20}, "need 22 readable images but found only 10"),
        ({"images_dir": "missing"}, "missing: no such file or folder"),
        ({"colorizers": {MODEL_A: FAKE_COLORIZERS[MODEL_A]}}, "at least two conditions .*, got 1"),
        ({"n": 0}, "at least 1"),
        ({"name": " "}, "non-empty --name"),
    ],
)
def test_bad_requests_are_user_errors(tmp_path, study_photos, change, message):
    kwargs = dict(
        db_url=f"sqlite:///{tmp_path / 'votes.db'}",
        name=STUDY,
        colorizers=FAKE_COLORIZERS,
        images_dir=study_photos,
        media_dir=tmp_path / "media",
        n=4,
        catch=2,
    )
    kwargs.update(change)
    if kwargs["images_dir"] == "missing":
        kwargs["images_dir"] = tmp_path / "missing"
    with pytest.raises(UserError, match=message):
        prepare_study(**kwargs)


def test_study_names_are_unique(prepared, study_photos, tmp_path):
    with pytest.raises(UserError, match="already exists"):
        prepare_study(prepared.db_url, STUDY, FAKE_COLORIZERS, study_photos, tmp_path / "other", n=2, catch=0)


def test_a_failed_prepare_leaves_no_files_and_no_study(tmp_path, study_photos):
    calls = []

    def flaky(photo: Image.Image) -> Image.Image:
        calls.append(photo)
        if len(calls) == 5:
            raise RuntimeError("model crashed")
        return photo

    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    with pytest.raises(RuntimeError, match="model crashed"):
        prepare_study(db_url, STUDY, {MODEL_A: flaky, MODEL_B: flaky}, study_photos, tmp_path / "media", n=4)
    assert list((tmp_path / "media").iterdir()) == []
    assert stimuli(db_url) == []


def test_a_model_that_changes_the_size_is_refused(tmp_path, study_photos):
    def shrink(photo: Image.Image) -> Image.Image:
        return photo.resize((8, 8))

    db_url = f"sqlite:///{tmp_path / 'v.db'}"
    with pytest.raises(UserError, match="returned"):
        prepare_study(db_url, STUDY, {MODEL_A: shrink, MODEL_B: shrink}, study_photos, tmp_path / "media", n=2)


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://x", "sqlite:////nonexistent/dir/votes.db"])
def test_bad_database_urls_are_user_errors(url):
    with pytest.raises(UserError):
        vote_rows(url)


def test_sqlite_connections_enforce_wal_and_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    with engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") > 0
    engine.dispose()


def test_cli_export(client, prepared, tmp_path, capsys):
    answer_all(client, enrol(client, "cli"))
    out = tmp_path / "exports" / "votes.csv"
    assert run_cli("study", "export", "--db", prepared.db_url, "--out", str(out)) == 0
    assert f"wrote {prepared.trials} votes" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == prepared.trials and {r["external_id"] for r in rows} == {"cli"}
    assert [p.name for p in out.parent.iterdir()] == ["votes.csv"]  # no temporary file left behind
    with pytest.raises(UserError, match="no study named"):
        run_cli("study", "export", "--db", prepared.db_url, "--out", str(out), "--study", "nope")


@pytest.mark.slow
def test_cli_prepare_with_real_checkpoints(tiny_checkpoint, study_photos, tmp_path):
    """The CLI path loads real (tiny, untrained) models through colorizer.Colorizer."""
    second = tmp_path / "second_run"
    shutil.copytree(tiny_checkpoint, second)
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    argv = ["study", "prepare", "--name", STUDY, "--images", str(study_photos), "--n", "2", "--catch", "1"]
    argv += ["--db", db_url, "--media", str(tmp_path / "media")]
    assert run_cli(*argv, "--models", str(tiny_checkpoint), str(second)) == 0
    files = stimuli(db_url)
    assert len(files) == 3 * 3 and {f["model"] for f in files} == {str(tiny_checkpoint), str(second), CATCH_MODEL}
    with pytest.raises(UserError, match="different models"):
        run_cli(*argv, "--models", "a", "a")


def test_a_database_from_before_the_new_columns_gets_them(tmp_path):
    """Columns added later (tokens, release times, server and exposure times) are added to an
    older database when it is opened, and its rows stay readable."""
    from sqlalchemy import inspect

    from study.db import open_database

    db_url = f"sqlite:///{tmp_path / 'old.db'}"
    database = open_database(db_url)
    with database.engine.begin() as connection:
        dropped = [("participant", "token_hash"), ("assignment", "released_at"), ("vote", "server_ms"),
                   ("study", "conditions"), ("study", "consent_markdown"), ("trial", "is_practice"),
                   ("participant", "viewport_width")]
        for table, column in dropped:
            connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
    database.dispose()
    database = open_database(db_url)
    inspector = inspect(database.engine)
    tables = ("participant", "assignment", "vote", "study", "trial")
    columns = {table: {column["name"] for column in inspector.get_columns(table)} for table in tables}
    database.dispose()
    assert all(column in columns[table] for table, column in dropped)
    assert vote_rows(db_url) == []


def test_conditions_are_models_truth_and_imports_matched_by_stem(tmp_path, study_photos):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    support.prepare_four_conditions(db_url, study_photos, tmp_path, n=3, catch=2, practice=1)
    files = stimuli(db_url)
    by_image: dict[int, dict[str, Path]] = {}
    for f in files:
        by_image.setdefault(f["image_id"], {})[f["model"]] = Path(f["path"])
    compared = [pair for pair in by_image.values() if set(pair) >= set(support.FOUR_CONDITIONS)]
    assert len(compared) == 3 + 2 and len(by_image) == 3 + 2 + 1
    sources = {f["image_id"]: Path(f["source"]) for f in files}
    for image_id, pair in by_image.items():
        if "truth" in pair:  # the original photo itself, JPEG-compressed
            with Image.open(sources[image_id]) as photo, Image.open(pair["truth"]) as truth:
                difference = np.asarray(ImageChops.difference(photo.convert("RGB"), truth), dtype=float)
                assert difference.mean() < 8
        if support.IMPORT_NAME in pair:  # the import with the photo's stem: tinted green
            with Image.open(pair[support.IMPORT_NAME]) as imported:
                red, green, blue = np.asarray(imported, dtype=float).reshape(-1, 3).mean(axis=0)
                assert green > red + 10 and green > blue + 10
    with database_session(db_url) as session:
        trials = session.scalars(select(Trial)).all()
        # Per photo of the pool a trial per pair of conditions and a catch trial; one per practice photo.
        assert len(trials) == (3 + 2) * (6 + 1) + 1
        assert sum(bool(t.is_practice) for t in trials) == 1 and sum(t.is_catch for t in trials) == 3 + 2


def test_missing_imports_are_named_in_one_line_and_nothing_is_written(tmp_path, study_photos):
    folder = support.write_import(study_photos, tmp_path / "imported")
    for stem in ("photo1", "photo4"):
        (folder / f"{stem}.png").unlink()
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    with pytest.raises(UserError) as raised:
        prepare_study(db_url, STUDY, FAKE_COLORIZERS, study_photos, tmp_path / "media", n=10, catch=0,
                      imports={"ddcolor": folder})
    message = str(raised.value)
    assert "\n" not in message and "import ddcolor" in message
    assert "2 sampled photos" in message and "photo1" in message and "photo4" in message
    assert not (tmp_path / "media").exists() or list((tmp_path / "media").iterdir()) == []
    assert stimuli(db_url) == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"colorizers": {"truth": FAKE_COLORIZERS[MODEL_A], MODEL_B: FAKE_COLORIZERS[MODEL_B]}}, "reserved"),
        ({"imports": {MODEL_A: "x"}}, "must differ"),
        ({"colorizers": {MODEL_A: FAKE_COLORIZERS[MODEL_A]}, "truth": True, "practice": 0, "catch": 0}, None),
        ({"colorizers": {}, "truth": True, "imports": {"x": "x"}}, "catch pairs need a model"),
    ],
)
def test_condition_names_are_checked(tmp_path, study_photos, options, message):
    kwargs = dict(db_url=f"sqlite:///{tmp_path / 'votes.db'}", name=STUDY, colorizers=FAKE_COLORIZERS,
                  images_dir=study_photos, media_dir=tmp_path / "media", n=2, catch=1)
    kwargs.update(options)
    if "imports" in kwargs:
        kwargs["imports"] = {name: support.write_import(study_photos, tmp_path / name) for name in kwargs["imports"]}
    if message is None:  # one model against the truth is a study too
        prepare_study(**kwargs)
        assert {f["model"] for f in stimuli(kwargs["db_url"])} == {MODEL_A, "truth"}
    else:
        with pytest.raises(UserError, match=message):
            prepare_study(**kwargs)


def test_cli_exports_the_stimuli(tmp_path, study_photos):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    support.prepare_four_conditions(db_url, study_photos, tmp_path, n=2)
    out = tmp_path / "stimuli.csv"
    assert run_cli("study", "export", "--db", db_url, "--stimuli", "--out", str(out)) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file_name", "image_id", "model", "study"]
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == sorted(row["file_name"] for row in rows)
    assert {row["model"] for row in rows} == {*support.FOUR_CONDITIONS, CATCH_MODEL}
    assert sum(row["model"] == "truth" for row in rows) == 2 + 1  # the compared and the catch photo


def test_cli_parses_imports(tmp_path):
    from study.cli import parse_imports

    assert parse_imports([f"ddcolor={tmp_path}"]) == {"ddcolor": tmp_path}
    for spec, message in [("ddcolor", "NAME=DIR"), ("=x", "NAME=DIR"), (f"a={tmp_path / 'no'}", "not a folder")]:
        with pytest.raises(UserError, match=message):
            parse_imports([spec])
    with pytest.raises(UserError, match="given twice"):
        parse_imports([f"a={tmp_path}", f"a={tmp_path}"])


def test_backup_copies_a_database_in_use(client, prepared, tmp_path, capsys):
    if not prepared.db_url.startswith("sqlite"):
        with pytest.raises(UserError, match="pg_dump"):
            run_cli("study", "backup", "--db", prepared.db_url, "--out", str(tmp_path / "b.db"))
        return
    participant = enrol(client, "before")
    answer_all(client, participant)
    out = tmp_path / "backups" / "votes.db"
    assert run_cli("study", "backup", "--db", prepared.db_url, "--out", str(out)) == 0
    assert "backed up" in capsys.readouterr().out
    enrol(client, "after")  # the server goes on; the copy is a self-contained file
    assert [p.name for p in out.parent.iterdir()] == ["votes.db"]
    copied = vote_rows(f"sqlite:///{out}")
    assert len(copied) == prepared.trials and {row["external_id"] for row in copied} == {"before"}
    with pytest.raises(UserError, match="another file"):
        run_cli("study", "backup", "--db", prepared.db_url, "--out", prepared.db_url.removeprefix("sqlite:///"))


def test_withdraw_deletes_a_participants_data(client, prepared, capsys):
    for external_id in ("stays", "leaves"):
        answer_all(client, enrol(client, external_id))
    assert run_cli("study", "withdraw", "--db", prepared.db_url, "--external-id", "leaves") == 0
    assert f"withdrew 1 participant(s) with external id 'leaves': {prepared.trials} votes" in capsys.readouterr().out
    assert {row["external_id"] for row in vote_rows(prepared.db_url)} == {"stays"}
    with database_session(prepared.db_url) as session:
        from study.models import Assignment, Participant

        assert session.scalars(select(Participant.external_id)).all() == ["stays"]
        assert len(session.scalars(select(Assignment)).all()) == prepared.trials
    with pytest.raises(UserError, match="no participant with external id 'leaves'"):
        run_cli("study", "withdraw", "--db", prepared.db_url, "--external-id", "leaves")
    with pytest.raises(UserError, match="no study named"):
        run_cli("study", "withdraw", "--db", prepared.db_url, "--external-id", "stays", "--study", "nope")
