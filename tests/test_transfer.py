"""Result-cache entries travel between machines: export, check, import (paperlib.runs.transfer, paper.transfer).

The entries are written by hand (a record, curve CSVs, a small weights.pt): nothing is trained.
"""
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from paperlib import RunSpec, load_profile
from paperlib.runs.cache import read_record
from paperlib.runs.transfer import (
    MANIFEST,
    ArchiveError,
    export_entries,
    import_entries,
    main,
    select_entries,
)

FP = {"code": "1111222233334444", "modules": {"training": "aaaabbbbccccdddd"}, "packages": {"torch": "2.4.0"}}
OTHER_FP = {"code": "9999888877776666", "modules": {"training": "0000111122223333"}, "packages": {"torch": "2.4.0"}}
DATASET, DIGEST = "synthetic test data", "0123456789abcdef"
SPEC = RunSpec(arch="lenet5", bits=8, scale=1.0, epochs=1, train_subset=100, test_subset=50)
CURVE = "curve-00000000aaaaaaaa-1111111111111111.csv"
CURVE2 = "curve-00000000bbbbbbbb-1111111111111111.csv"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def make_entry(results: Path, spec: RunSpec = SPEC, fingerprint: dict | None = FP, weights: bool = False,
               curves: tuple[str, ...] = (CURVE,), accuracy: float = 0.5) -> Path:
    """A cache entry as run() writes it: record.json (with the keys the cache requires), curves, maybe weights."""
    resolved = replace(spec, dataset=DATASET, data_digest=DIGEST)
    key = resolved.train_key()
    entry = results / "runs" / key
    entry.mkdir(parents=True)
    record = {"cache_version": 1, "key": key, "spec": resolved.training_fields(), "accuracy": accuracy,
              "diverged": False, "error": None, "history": {"epoch": [1], "loss": [2.0]}, "weights": weights,
              "weights_mb": 0.1, "fingerprint": fingerprint, "provenance": {"revision": "abc1234", "device": "cpu"}}
    (entry / "record.json").write_text(json.dumps(record, indent=1))
    for i, name in enumerate(curves):
        (entry / name).write_text(f"sigma,repeat,accuracy\n0.1,0,0.{5 + i}\n1.0,0,0.1\n")
    if weights:
        torch.save({"w": torch.arange(6.0).reshape(2, 3) + spec.seed}, entry / "weights.pt")
    return entry


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``: relative path -> bytes (the empty dict when the folder does not exist)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def two_machines(tmp_path_factory):
    """Two results folders in two different tmp folders: the GPU server's and the laptop's."""
    return tmp_path_factory.mktemp("gpu") / "results", tmp_path_factory.mktemp("laptop") / "results"


def test_round_trip_carries_records_and_curves_and_no_weights_by_default(two_machines, tmp_path):
    src, dst = two_machines
    a = make_entry(src, weights=True, curves=(CURVE, CURVE2))
    b = make_entry(src, replace(SPEC, seed=1))
    out = tmp_path / "results.tar.gz"
    report = export_entries(src, [a.name, b.name], out)
    assert report.entries == [a.name, b.name] and report.files == 5 and report.weights_files == 0
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert report.total_bytes == sum(m.size for m in tar.getmembers() if m.name != MANIFEST)
    assert MANIFEST in names and not any(n.endswith("weights.pt") for n in names)
    assert not list(tmp_path.glob(".*.tmp")), "the temporary archive was left behind"

    imported = import_entries(out, dst)
    assert imported.added == [a.name, b.name] and not imported.kept and not imported.refused
    assert tree(dst / "runs" / b.name) == tree(b)  # byte-equal
    got, want = tree(dst / "runs" / a.name), tree(a)
    assert set(got) == {"record.json", CURVE, CURVE2} and got[CURVE] == want[CURVE] and got[CURVE2] == want[CURVE2]
    # the record is the same but for "weights": an entry without weights.pt must not promise them (and says why)
    assert json.loads(got["record.json"]) == {**json.loads(want["record.json"]), "weights": False,
                                               "weights_not_exported": True}
    assert read_record(dst, dst / "runs" / a.name) is not None  # the cache reads it (not moved to corrupt/)
    assert not (dst / "corrupt").exists()
    assert "2 added" in str(imported) and "exported 2 entries" in str(report)


def test_round_trip_with_weights_is_byte_equal(two_machines, tmp_path):
    src, dst = two_machines
    a = make_entry(src, weights=True, curves=(CURVE, CURVE2))
    b = make_entry(src, replace(SPEC, seed=1))  # kept no weights
    out = tmp_path / "results.tar"  # plain tar
    report = export_entries(src, [a.name, b.name], out, weights=True)
    assert report.weights_files == 1 and report.total_bytes == sum(len(v) for v in tree(src).values())
    assert tarfile.open(out, "r:").getnames()[-1] == MANIFEST  # not compressed, manifest last
    import_entries(out, dst)
    assert tree(dst / "runs") == tree(src / "runs")
    w = torch.load(dst / "runs" / a.name / "weights.pt", weights_only=True)
    assert torch.equal(w["w"], torch.arange(6.0).reshape(2, 3))


def test_an_entry_of_the_same_code_is_kept_and_completed(two_machines, tmp_path):
    src, dst = two_machines
    a = make_entry(src, weights=True, curves=(CURVE, CURVE2), accuracy=0.5)
    mine = make_entry(dst, weights=False, curves=(CURVE,), accuracy=0.75)  # same key, same code, fewer files
    (mine / CURVE).write_text("sigma,repeat,accuracy\n0.1,0,0.9\n")  # this folder's points stay
    before = json.loads((mine / "record.json").read_text())
    out = tmp_path / "r.tar.gz"
    export_entries(src, [a.name], out, weights=True)
    report = import_entries(out, dst)
    assert report.kept == {a.name: [CURVE2, "weights.pt"]} and not report.added and not report.refused
    assert (mine / CURVE).read_text() == "sigma,repeat,accuracy\n0.1,0,0.9\n"
    assert (mine / CURVE2).read_bytes() == (a / CURVE2).read_bytes()
    assert (mine / "weights.pt").read_bytes() == (a / "weights.pt").read_bytes()
    after = json.loads((mine / "record.json").read_text())
    assert after == {**before, "weights": True} and after["accuracy"] == 0.75  # kept: this folder's record
    assert "completed" in str(report)
    # a second import finds nothing to add
    again = import_entries(out, dst)
    assert again.kept == {a.name: []} and not again.added


def test_an_entry_of_other_code_is_refused_then_replaced_on_request(two_machines, tmp_path):
    src, dst = two_machines
    a = make_entry(src, curves=(CURVE, CURVE2))
    old = make_entry(dst, fingerprint=OTHER_FP, accuracy=0.25)
    old_files = tree(old)
    out = tmp_path / "r.tar.gz"
    export_entries(src, [a.name], out)

    refused = import_entries(out, dst)
    assert list(refused.refused) == [a.name] and "other code" in refused.refused[a.name]
    assert not refused.added and not refused.replaced and tree(old) == old_files
    assert "--replace-other-code" in str(refused)

    replaced = import_entries(out, dst, replace_other_code=True)
    moved = replaced.replaced[a.name]
    assert moved.parent == dst / "stale" and moved.name.startswith(a.name) and tree(moved) == old_files
    assert tree(dst / "runs" / a.name) == tree(a) and not replaced.refused


def _flip_byte(path: Path, member_suffix: str) -> str:
    """Flip one byte inside the data of the member ending in ``member_suffix`` of a plain tar; returns its name."""
    with tarfile.open(path, "r:") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(member_suffix))
    raw = bytearray(path.read_bytes())
    raw[member.offset_data + 3] ^= 0x01
    path.write_bytes(bytes(raw))
    return member.name


def test_a_corrupted_archive_is_refused_whole_naming_the_file(two_machines, tmp_path):
    src, dst = two_machines
    a = make_entry(src, curves=(CURVE, CURVE2))
    make_entry(dst, replace(SPEC, seed=5))
    out = tmp_path / "r.tar"
    export_entries(src, [a.name], out)
    name = _flip_byte(out, CURVE2)
    before = tree(dst)
    with pytest.raises(ArchiveError, match="sha256") as err:
        import_entries(out, dst)
    assert name in str(err.value) and "nothing was written" in str(err.value)
    assert tree(dst) == before and not (dst / "runs" / a.name).exists()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_a_truncated_archive_is_refused_and_writes_nothing(two_machines, tmp_path, suffix):
    src, dst = two_machines
    keys = [make_entry(src, replace(SPEC, seed=k), weights=True).name for k in range(3)]
    out = tmp_path / f"r{suffix}"
    export_entries(src, keys, out, weights=True)
    raw = out.read_bytes()
    out.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArchiveError, match="truncated") as err:
        import_entries(out, dst)
    assert str(out) in str(err.value) and "\n" not in str(err.value)
    assert not dst.exists()  # not even the results folder was made


def test_a_damaged_compressed_archive_is_refused(two_machines, tmp_path):
    src, dst = two_machines
    a = make_entry(src, weights=True)
    out = tmp_path / "r.tar.gz"
    export_entries(src, [a.name], out, weights=True)
    raw = bytearray(out.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    out.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        import_entries(out, dst)
    assert not dst.exists()


def _hand_made(path: Path, files: dict[str, bytes], manifest: dict | bytes) -> Path:
    """A plain tar holding ``files`` and ``manifest`` (written as given)."""
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in {**files, MANIFEST: raw}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("damage,message", [
    ("escape", "escape the entry folder"),
    ("extra", "does not list"),
    ("missing", "lacks"),
    ("not json", "not JSON"),
    ("version", "format version 99"),
])
def test_a_malformed_archive_is_refused_with_what_is_wrong(two_machines, tmp_path, damage, message):
    src, dst = two_machines
    a = make_entry(src, curves=(CURVE, CURVE2))
    good = tmp_path / "good.tar"
    export_entries(src, [a.name], good)
    with tarfile.open(good) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name != MANIFEST}
        manifest = json.loads(tar.extractfile(MANIFEST).read())
    curve = f"runs/{a.name}/{CURVE2}"
    if damage == "escape":
        manifest["entries"][0]["files"][-1]["path"] = f"../{CURVE2}"
    elif damage == "extra":
        files[f"runs/{a.name}/curve-extra.csv"] = b"sigma,repeat,accuracy\n"
    elif damage == "missing":
        del files[curve]
    elif damage == "version":
        manifest["format_version"] = 99
    bad = _hand_made(tmp_path / "bad.tar", files, b"{not json" if damage == "not json" else manifest)
    with pytest.raises(ValueError, match=message):
        import_entries(bad, dst)
    assert not dst.exists()


def test_a_spec_without_data_set_selects_its_entry(tmp_path):
    results = tmp_path / "results"
    a = make_entry(results)
    make_entry(results, replace(SPEC, seed=1))
    make_entry(results, replace(SPEC, bits=None, scale=None))
    assert SPEC.dataset is None and SPEC.data_digest is None
    assert select_entries(results, [SPEC]) == ([a.name], [])
    other_data = replace(SPEC, dataset="CIFAR-10 (JPEG copy)")  # a data set given is compared
    assert select_entries(results, [other_data]) == ([], [other_data])
    report = export_entries(results, [SPEC, a.name], tmp_path / "r.tar.gz")  # one entry, named twice
    assert report.entries == [a.name] and not report.missing


def test_an_absent_key_is_reported_and_nothing_found_writes_nothing(tmp_path):
    results = tmp_path / "results"
    a = make_entry(results)
    absent, spec = "0123456789abcdef", replace(SPEC, epochs=7)
    report = export_entries(results, [a.name, absent, spec], tmp_path / "r.tar.gz")
    assert report.entries == [a.name] and report.missing == [absent, spec]
    assert absent in str(report) and "epochs=7" in str(report)
    with pytest.raises(ValueError, match="nothing to export"):
        export_entries(results, [absent], tmp_path / "none.tar.gz")
    assert not (tmp_path / "none.tar.gz").exists()
    with pytest.raises(ValueError, match="neither a train key"):
        export_entries(results, ["not-a-key"], tmp_path / "none.tar.gz")


def test_command_line_round_trip_and_one_line_errors(two_machines, tmp_path, capsys):
    src, dst = two_machines
    a = make_entry(src)
    out = tmp_path / "r.tar.gz"
    assert main(["export", "--results", str(src), "--out", str(out), a.name]) == 0
    assert main(["import", str(out), "--results", str(dst)]) == 0
    assert tree(dst / "runs") == tree(src / "runs")
    capsys.readouterr()
    assert main(["import", str(tmp_path / "absent.tar.gz"), "--results", str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_specs_for_notebook_01_are_the_specs_it_runs():
    from paperlib.paper.specs import clean_specs, qat_variants
    from paperlib.paper.transfer import specs_for

    p = load_profile("smoke")
    assert specs_for(p, ["01"]) == clean_specs(p, "lenet5", qat_variants(p, "lenet5"))
    every = specs_for(p)
    assert len(every) == len(set(every)) and set(specs_for(p, ["01"])) <= set(every)
    with pytest.raises(ValueError, match="02-vgg11"):
        specs_for(p, ["02"])


def test_specs_for_mirrors_the_notebooks_sweep_calls():
    """paper.transfer builds each notebook's specs with its figure module's ``specs``, the ones its sweep cell runs
    (``session.run(<module>)``): a cell that sweeps anything else fails here."""
    calls = {
        "01_fig2_lenet_qat": "df = session.run(paper.fig2)\n",
        "02_tableI": "df = session.run(paper.table1, arch=arch)\n",
        "03_fig3_noisy_training": "df = session.run(paper.fig3)\n",
        "04_tableII": "df = session.run(paper.table2)\n",
        "05_walking_noise": "candidates = session.run(paper.walking_noise)\n",
        "06_variance_aware": "df = session.run(paper.variance_aware, arch=arch)\n",
        "07_noise_kinds": "df = session.run(paper.noise_kinds)\n",
    }
    for stem, call in calls.items():
        nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert call in code, f"notebook {stem} no longer sweeps {call}: update paperlib/paper/transfer.py"
        assert code.count("session.sweep(") <= (1 if stem == "05_walking_noise" else 0), stem  # 05: its site specs
    nb06 = json.loads((NOTEBOOKS / "06_variance_aware.ipynb").read_text())
    parameters = next(c for c in nb06["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assert 'arch = "lenet5"' in "".join(parameters["source"])  # the main job passes 06 no arch: paper.transfer's


def test_a_network_imported_without_weights_says_so_when_asked_for_them(tmp_path):
    import pandas as pd

    from paperlib.midpoint import MidpointFit
    from paperlib.runs.experiment import RunResult

    entry = tmp_path / "runs" / "0123456789abcdef"
    entry.mkdir(parents=True)
    fit = MidpointFit(float("nan"), float("nan"), float("nan"), 0.1, float("nan"), False, "")
    result = RunResult(RunSpec(), "0123456789abcdef", 0.5, pd.DataFrame(), fit, pd.DataFrame(), False, None, False,
                       {"weights": False, "weights_not_exported": True, "weights_mb": 0.2}, entry)
    with pytest.raises(FileNotFoundError, match=r"imported without weights \(make export WEIGHTS=1 on the machine "
                                                r"that trained it carries them\); run\(spec, need_weights=True\)"):
        result.load_model()
