"""The epochs curve (paperlib.paper.epochs_curve; docs/protocol.md §7): its networks keep the cache keys of the
committed curve, a GPU machine trains them in a slice, and ``python -m benchmarks.epochs_curve`` renders the
imported networks here without training anything."""
import json

import pandas as pd
import pytest

import paperlib.runs.experiment as experiment
from benchmarks import epochs_curve as cli
from paperlib import load_profile
from paperlib.paper import epochs_curve as ec
from paperlib.paper import slices
from paperlib.runs.check_figures import read_fingerprint
from paperlib.runs.transfer import import_entries


def test_lenet5s_networks_are_those_of_the_committed_curve():
    # what benchmarks/epochs_curve.py built before this module (figures/lenet-full/epochs_curve.csv): same keys
    prof = load_profile("lenet-full")
    before = [prof.spec("lenet5", bits=b, scale=s, epochs=e, seed=0) for e in (64, 32, 16, 8)
              for b, s in [(None, None), (8, 8.0)]]
    assert ec.specs(prof, [8, 16, 32, 64]) == before  # equal specs: equal cache keys on any data set
    deep = ec.specs(load_profile("gpu"), [5, 40, 5], "vgg11", [(None, None)])
    assert [(s.arch, s.bits, s.epochs, s.seed) for s in deep] == [("vgg11", None, 40, 0), ("vgg11", None, 5, 0)]
    assert [(s.bits, s.scale) for s in ec.specs(prof, [2], "resnet18")] == [(None, None), (8, 1.0)]


@pytest.mark.parametrize("token,variant", [("fp32", (None, None)), ("8:dynamic", (8, None)), ("4:0.5", (4, 0.5))])
def test_variants_are_read_from_their_tokens(token, variant):
    assert ec.parse_variant(token) == variant


@pytest.mark.parametrize("bad,match", [
    (dict(token="8"), r"variant '8' is none of fp32, BITS:dynamic or BITS:SCALE"),
    (dict(token="int8:1"), r"variant 'int8:1' is none of"),
    (dict(arch="alexnet"), r"unknown arch 'alexnet'; choose one of lenet5, vgg11, resnet18"),
    (dict(epochs=[0, 8]), r"epochs must be whole numbers >= 1, got \[0, 8\]"),
    (dict(epochs=[]), r"epochs must be whole numbers >= 1"),
])
def test_bad_input_is_one_sentence(bad, match):
    with pytest.raises(ValueError, match=match):
        if "token" in bad:
            ec.parse_variant(bad["token"])
        else:
            ec.specs(load_profile("smoke"), bad.get("epochs", [1]), bad.get("arch", "lenet5"))


def test_a_slice_trains_the_curve_and_the_cli_renders_it_here_from_the_archive(tmp_path, learnable_root,
                                                                             monkeypatch, capsys):
    out = tmp_path / "gpu" / "out"
    argv = ["--profile", "smoke", "--epochs-curve", "lenet5", "--epochs", "1", "2", "--variants", "fp32",
            "--budget-s", "3600", "--device", "cpu", "--results", str(tmp_path / "gpu" / "results"),
            "--data", str(learnable_root), "--out", str(out)]
    assert slices.main(argv) == 0
    info = json.loads((out / "slice.json").read_text())
    assert info["notebooks"] == [] and info["epochs_curve"] == {"arch": "lenet5", "epochs": [1, 2],
                                                               "variants": [[None, None]]}
    assert info["specs"]["total"] == 2 and info["specs"]["done"] == 2
    assert len(info["runs"]) == 2 and all(r["trained"] and r["arch"] == "lenet5" for r in info["runs"])
    # the longest first; runs of other epochs than the profile's say so
    assert [r["spec"] for r in info["runs"]] == ["lenet5 fp32 sigma_train=0 seed=0 epochs=2",
                                                 "lenet5 fp32 sigma_train=0 seed=0"]

    here = tmp_path / "laptop"
    assert len(import_entries(out / "results-smoke-slice.tar.gz", here / "results").added) == 2
    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("trained although the curve was imported"))
    monkeypatch.setenv("PAPERLIB_RESULTS", str(here / "results"))
    monkeypatch.setenv("PAPERLIB_FIGURES", str(here / "figures"))
    monkeypatch.setenv("PAPERLIB_DATA", str(learnable_root))
    assert cli.main(["--profile", "smoke", "--epochs", "1", "2", "--variants", "fp32", "--executor", ""]) == 0
    csv = here / "figures" / "epochs_curve.csv"
    table = pd.read_csv(csv, comment="#")
    assert list(table.epochs) == [1, 2] and list(table.variant) == ["fp32", "fp32"]
    assert table.peak_acc.between(0, 1).all()
    assert "paper/epochs_curve" in read_fingerprint(csv)["modules"]
    assert "| fp32 | 2 |" in capsys.readouterr().out


def test_the_cli_and_the_slice_refuse_bad_input_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--profile", "smoke", "--variants", "int8"])
    assert "variant 'int8' is none of" in capsys.readouterr().err
    argv = ["--profile", "smoke", "--epochs", "1", "--budget-s", "60", "--out", str(tmp_path / "out")]
    assert slices.main(argv) == 2
    assert "an epochs curve needs --epochs-curve ARCH and --epochs" in capsys.readouterr().err
