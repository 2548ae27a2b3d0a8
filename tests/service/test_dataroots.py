"""Files a spec sent over HTTP may read: only under the server's ``--data-root`` folders, with
symlinks and ``..`` resolved first; none without one. The rules on `DataRoots` itself, then on a
real server on loopback (the CLI's ``run`` is not confined: `tests/cli`, `tests/trainables/data`).
"""

from __future__ import annotations

import pytest
import yaml

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.dataroots import DataRoots
from backdoor_sweep.service.errors import Forbidden
from backdoor_sweep.service.records import Records
from sweep.spec import load_spec, parse_spec
from sweep.store import Store
from tests.conftest import cli
from tests.dataset_files import solid_png, write_image_folder
from tests.service.live_server import LiveServer, add_token, wait_for


def image_spec(name: str, folder: str, **dataset) -> dict:
    """The default spec's smoke grid on an image folder of cats and dogs, 8×8 grey."""
    raw = load_spec().smoke().model_dump(mode="json")
    raw["name"] = name
    raw["dataset"] = {
        "name": "image_folder",
        "folder": folder,
        "image_size": 8,
        "grayscale": True,
        **dataset,
    }
    return raw


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A data root with an image folder and a trigger image, the same outside it, and symlinks
    inside the root: one escaping it, one staying in it."""
    base = tmp_path_factory.mktemp("places")
    root, outside = base / "root", base / "outside"
    write_image_folder(root / "pets", ["cat", "dog"], n_per_class=10)
    write_image_folder(outside / "secret", ["mine", "yours"], n_per_class=2)
    solid_png(root / "trigger.png", (8, 8), (255, 255, 255))
    solid_png(outside / "trigger.png", (8, 8), (255, 255, 255))
    (root / "escape").symlink_to(outside / "secret", target_is_directory=True)
    (root / "alias").symlink_to(root / "pets", target_is_directory=True)
    return root, outside


# -- the rules -----------------------------------------------------------------------------------
def test_without_a_data_root_no_file_is_read_for_a_request(places):
    root, _ = places
    none = DataRoots()
    with pytest.raises(Forbidden) as err:
        none.confine(image_spec("x", str(root / "pets")))
    assert str(err.value) == (
        "dataset.name must be one of digits, mnist_sample in a spec sent to this server (it reads "
        "no dataset files for a request: it was started without --data-root); got 'image_folder'"
    )
    with pytest.raises(Forbidden, match="got 'mnist'"):
        none.confine({"dataset": {"name": "mnist", "data_root": str(root)}})
    raw = load_spec().smoke().model_dump(mode="json")
    assert none.confine(raw) == raw  # bundled datasets, generated patterns: nothing to confine
    for section in ("attack", "grid"):
        image = str(root / "trigger.png")
        spec = {
            section: {
                "trigger": "blend",
                "pattern_image": image if section == "attack" else [image],
            }
        }
        with pytest.raises(Forbidden) as err:
            none.confine(spec)
        assert str(err.value).startswith(
            f"{section}.pattern_image must not be set in a spec sent to this server"
        )


def test_paths_inside_a_root_are_resolved_and_kept(places):
    root, _ = places
    roots = DataRoots([root.parent / "root" / ".." / "root"])  # the roots are resolved too
    assert roots.roots == (root.resolve(),)
    pets = str(root.resolve() / "pets")
    for dataset in (
        {"folder": str(root / "pets")},
        {"folder": "pets", "data_root": str(root)},
        {"folder": str(root / "alias")},  # a symlink that stays inside
        {"folder": str(root / "pets" / "cat" / ".." / "..") + "/pets"},
    ):
        raw = image_spec("x", **{"folder": dataset.pop("folder")}, **dataset)
        assert roots.confine(raw)["dataset"]["folder"] == pets, dataset
    spec = parse_spec(roots.confine(image_spec("x", str(root / "pets"))))
    assert spec.dataset.folder == pets  # what the runner will read: exactly what was checked
    mnist = roots.confine({"dataset": {"name": "mnist", "data_root": str(root)}})
    assert mnist["dataset"]["data_root"] == str(root.resolve())
    image = roots.confine({"attack": {"pattern_image": str(root / "trigger.png")}})
    assert image["attack"]["pattern_image"] == str(root.resolve() / "trigger.png")
    grid = roots.confine({"grid": {"pattern_image": [str(root / "trigger.png")], "C": [1]}})
    assert grid["grid"] == {"pattern_image": [str(root.resolve() / "trigger.png")], "C": [1]}


def test_paths_leaving_every_root_are_refused_dots_and_symlinks_resolved(places, monkeypatch):
    root, outside = places
    roots = DataRoots([root])
    allowed = f"must be inside a data root of this server ({root.resolve()})"
    for folder, note in (
        (str(outside / "secret"), ""),
        ("/etc", ""),
        (f"{root}/../outside/secret", " (symlinks and '..' resolved, it lies outside them)"),
        (str(root / "escape"), " (symlinks and '..' resolved, it lies outside them)"),
        ("/a\0b", " (it cannot be resolved)"),
    ):
        with pytest.raises(Forbidden) as err:
            roots.confine(image_spec("x", folder, classes=["nope"]))
        assert str(err.value) == f"dataset.folder {allowed}; got {folder!r}{note}", folder
    with pytest.raises(Forbidden) as err:
        roots.confine(image_spec("x", "../outside/secret", data_root=str(root)))
    assert str(err.value) == (
        f"dataset.folder {allowed}; got '../outside/secret' (relative to data_root {str(root)!r})"
        " (symlinks and '..' resolved, it lies outside them)"
    )
    monkeypatch.delenv("BACKDOOR_SWEEP_DATA", raising=False)
    monkeypatch.chdir(outside)
    with pytest.raises(Forbidden) as err:  # mnist's default data_root: ./data, outside the root
        roots.confine({"dataset": {"name": "mnist"}})
    assert str(err.value) == (
        f"dataset.data_root {allowed}; got None (the default: $BACKDOOR_SWEEP_DATA, else ./data)"
    )
    for spec in (
        {"attack": {"pattern_image": str(outside / "trigger.png")}},
        {"grid": {"pattern_image": [str(root / "trigger.png"), str(outside / "trigger.png")]}},
    ):
        with pytest.raises(Forbidden, match=r"pattern_image must be inside a data root"):
            roots.confine(spec)


def test_a_malformed_dataset_is_left_to_validation(places):
    roots = DataRoots([places[0]])
    for dataset in ({"name": "imagenet"}, {"name": "image_folder"}, "digits"):
        raw = {**image_spec("x", "unused"), "dataset": dataset}
        if isinstance(dataset, dict) and dataset.get("name") == "image_folder":
            with pytest.raises(SweepError, match="dataset.folder must name the folder"):
                roots.confine(raw)
        else:
            assert roots.confine(raw) == raw
            with pytest.raises(SweepError, match="dataset"):
                parse_spec(raw)


# -- a real server --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(places, tmp_path_factory):
    root, outside = places
    store = Store(tmp_path_factory.mktemp("served") / "store")
    token = add_token(store.root, "alice")
    # a sweep the CLI's user once ran on a folder outside the root: the API may not resume it
    raw = image_spec("elsewhere", str(outside / "secret"), classes=None)
    raw["attack"]["target"] = 0
    Records(store).claim("elsewhere")
    Records(store).write_job(
        "elsewhere", {"name": "elsewhere", "submitter": "cli", "spec": raw, "history": []}
    )
    server = LiveServer(store.root, "--data-root", str(root)).start()
    yield server, store, token, root, outside
    server.close()


def test_the_server_refuses_folders_outside_its_roots_and_reads_those_inside(served):
    server, store, token, root, outside = served
    before = sorted(p.name for p in (store.root / ".service" / "sweeps").iterdir())
    with server.client(token) as alice:
        for folder in (str(outside / "secret"), f"{root}/../outside/secret", str(root / "escape")):
            r = alice.post("/sweeps", content=yaml.safe_dump(image_spec("x", folder)))
            assert r.status_code == 403, r.text
            assert r.json()["error"].startswith(
                f"dataset.folder must be inside a data root of this server ({root.resolve()}); "
                f"got {folder!r}"
            )
            assert "mine" not in r.text  # the folder outside was not listed
        r = alice.post("/sweeps", content=yaml.safe_dump(image_spec("x", "pets", classes=["cow"])))
        assert r.status_code == 403  # relative to the server's ./data: outside
        inside = image_spec("x", str(root / "pets"), classes=["cat", "cow"])
        r = alice.post("/sweeps", content=yaml.safe_dump(inside))
        assert r.status_code == 422  # past the roots: validation read the folder's classes
        assert "dog" in r.json()["error"]
        r = alice.post("/sweeps/elsewhere/resume")
        assert r.status_code == 403
        assert r.json()["error"].startswith("dataset.folder must be inside a data root")
        assert alice.get("/sweeps/elsewhere").json()["status"] == "interrupted"
    assert sorted(p.name for p in (store.root / ".service" / "sweeps").iterdir()) == before


@pytest.mark.slow
def test_a_sweep_on_an_image_folder_inside_a_root_runs(served):
    server, store, token, root, _ = served
    with server.client(token) as alice:
        raw = image_spec("pets", str(root / "alias"), classes=None)
        r = alice.post("/sweeps", content=yaml.safe_dump(raw))
        assert r.status_code == 201, r.text
        state = wait_for(
            lambda: (
                (s := alice.get("/sweeps/pets").json())["status"] in ("finished", "failed") and s
            ),
            400,
            "the sweep did not end",
        )
        assert state["status"] == "finished", alice.get("/sweeps/pets/log").text
        assert state["spec"]["dataset"]["folder"] == str(root.resolve() / "pets")
        assert state["done"] == state["total"] == parse_spec(raw).n_results


def test_the_data_roots_are_checked_when_the_server_starts(tmp_path):
    store = tmp_path / "store"
    add_token(store, "alice")
    (tmp_path / "file").write_text("x")
    for given, why in ((tmp_path / "nope", "not found"), (tmp_path / "file", "not a folder")):
        out = cli("serve", "--store", str(store), "--data-root", str(given))
        assert (out.returncode, out.stderr.strip()) == (
            2,
            f"error: --data-root must be an existing folder; got '{given}' ({why})",
        )


def test_the_cli_run_is_not_confined(places, tmp_path):
    """The local user's own ``run`` reads any folder it names: here one outside every root, whose
    classes its validation lists (it stops there, on the class it cannot find)."""
    _, outside = places
    raw = image_spec("local", str(outside / "secret"), classes=["mine", "cow"])
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = cli("run", str(path), "--store", str(tmp_path / "store"))
    assert out.returncode == 2 and out.stderr.startswith("error: dataset.classes")
    assert "yours" in out.stderr
