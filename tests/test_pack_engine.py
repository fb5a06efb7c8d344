"""Packs in the run engine (paperlib.runs.packs): a sweep trains what it lacks in packs, each network in its own
cache entry with the pack's provenance and code fingerprint; resumable; the CPU default unchanged."""
import json

import pytest
import torch

import paperlib.runs.experiment as experiment
import paperlib.runs.packs as packs
from paperlib import RunSpec, accuracy, run, run_sweep
from paperlib.runs.fingerprint import code_fingerprint, current_codes

SPEC = dict(arch="lenet5", bits=8, scale=1.0, epochs=2, batch_size=32, sigmas=(0.5, 2.0), repeats=1)


def _specs(seeds=(0, 1, 2), **kw):
    return [RunSpec(**{**SPEC, **kw, "seed": s}) for s in seeds]


def _no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("training happened")
    monkeypatch.setattr(experiment, "train", fail)
    monkeypatch.setattr(packs, "train_pack", fail)


def _recorded(root, key):
    return json.loads((root / "runs" / key / "record.json").read_text())


def test_a_sweep_trains_in_packs_and_caches_each_network(tiny_root, tmp_path, monkeypatch):
    log = tmp_path / "progress.txt"
    monkeypatch.setenv("PAPERLIB_PROGRESS", str(log))
    specs = _specs((0, 1, 2)) + _specs((0,), sigma_train=0.5) + _specs((0,), bits=None, scale=None)
    calls = []
    real = experiment.train
    monkeypatch.setattr(experiment, "train", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = tmp_path / "results"
    df = run_sweep(specs, data_root=tiny_root, results_dir=results, device="cpu", progress=False, pack=8)
    assert df.trained.all() and df.error.isna().all()
    assert len(calls) == 1  # the fp32 network has no pack mate: it trained alone
    runs = df.drop_duplicates("key")
    assert sorted(runs.pack) == [1, 4, 4, 4, 4]
    lines = log.read_text()
    assert "pack 1/1: 4 lenet5 8-bit s=1 networks (seeds 0-2; training sigmas 0, 0.5): trained together" in lines
    assert lines.count("trained in a pack of 4") == 4
    assert "pack 1/1: epoch 2/2 of 4 lenet5 8-bit s=1 networks" in lines  # a line after a pack's last epoch
    packed = [_recorded(results, k) for k in runs[runs.pack == 4].key]
    members = packed[0]["trained_in"]["members"]
    assert sorted(members) == members and {r["key"] for r in packed} == set(members)
    assert sorted(r["trained_in"]["index"] for r in packed) == [0, 1, 2, 3]
    pack_code, plain_code = code_fingerprint(packed=True)["code"], code_fingerprint()["code"]
    assert pack_code != plain_code and current_codes() == {pack_code, plain_code}
    assert {r["fingerprint"]["code"] for r in packed} == {pack_code} and "pack" in packed[0]["fingerprint"]["modules"]
    assert set(runs[runs.pack == 4].code) == {pack_code} and set(runs[runs.pack == 1].code) == {plain_code}
    assert not list((results / "partial").glob("pack-*"))  # the checkpoint went with the finished pack
    # each network's entry is its own: its kept weights give its recorded clean accuracy; its curve has its own file
    data = experiment.shared_data(str(tiny_root), "cpu")
    for spec in specs[:4]:
        res = run(spec, tiny_root, results, "cpu", progress=False)
        assert not res.trained and res.pack == 4 and res.record["trained_in"]["members"] == members
        sub = data.subset(train=res.spec.train_subset, test=res.spec.test_subset, seed=experiment.SUBSET_SEED)
        assert accuracy(res.load_model(), sub.x_test, sub.y_test, 0.0) == res.accuracy
        assert experiment.curve_path(res.path, res.spec, code_fingerprint(packed=True)).is_file()
        assert not experiment.curve_path(res.path, res.spec, code_fingerprint()).is_file()
    # a second sweep trains nothing and gives the same table
    _no_training(monkeypatch)
    again = run_sweep(specs, data_root=tiny_root, results_dir=results, device="cpu", progress=False, pack=8)
    assert not again.trained.any()
    cols = ["key", "sigma", "repeat", "accuracy", "clean_accuracy", "pack", "code"]
    assert again[cols].equals(df[cols])


def _resolved(specs):
    return [RunSpec(**{**s.to_dict(), "dataset": "d", "data_digest": "0" * 16}) for s in specs]


def test_packs_group_what_trains_alike_and_split_evenly():
    specs = _resolved(_specs(range(10)) + _specs((0, 1), bits=4) + _specs((5,), train_noise_kind="weight",
                                                                           sigma_train=0.1))
    planned = packs.plan_packs(specs, 4)
    assert sorted(map(len, planned)) == [2, 3, 3, 4]  # 10 8-bit in 4 + 3 + 3; the two 4-bit in one; weight noise alone
    for p in planned:
        assert len({(s.bits, s.scale, s.epochs) for s in p}) == 1
        assert [s.train_key() for s in p] == sorted(s.train_key() for s in p)
    assert all(s.train_noise_kind != "weight" for p in planned for s in p)
    assert packs.plan_packs(specs, 1) == [] and packs.plan_packs(specs[:1], 8) == []
    # an interrupted pack is taken first, as it was, when all its networks still need training
    eight = _resolved(_specs(range(10)))
    keys = sorted(s.train_key() for s in eight)
    unfinished = [keys[3:6]]
    again = packs.plan_packs(eight, 4, unfinished)
    assert [s.train_key() for s in again[0]] == keys[3:6] and sorted(map(len, again)) == [3, 3, 4]
    assert packs.plan_packs(eight[:5], 4, [keys]) != [[s for s in eight if s.train_key() in keys]]


def test_the_pack_size_by_device_and_its_bad_values(monkeypatch):
    monkeypatch.delenv(packs.ENV, raising=False)
    assert packs.pack_size(None, "cpu", "lenet5") == 1  # on the CPU every network trains alone (one exact thread)
    monkeypatch.setattr(packs, "resolve_device", lambda d: torch.device("cuda"))
    assert [packs.pack_size(None, "cuda", a) for a in ("lenet5", "vgg11", "resnet18")] == [32, 1, 1]
    assert packs.pack_size(6, "cuda", "lenet5") == 6
    monkeypatch.setenv(packs.ENV, "3")
    assert packs.pack_size(None, "cuda", "lenet5") == 3 and packs.pack_size(2, "cuda", "lenet5") == 2
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="pack must be a whole number >= 1"):
            packs.pack_size(bad, "cpu", "lenet5")
    monkeypatch.setenv(packs.ENV, "many")
    with pytest.raises(ValueError, match=r"\$PAPERLIB_PACK='many' is not a pack size"):
        run_sweep([], pack=None)


class _Killed(BaseException):
    """Stands for the process being killed (not an Exception: nothing catches it)."""


def test_an_interrupted_pack_resumes_in_the_next_sweep(tiny_root, tmp_path, monkeypatch):
    specs = _specs((0, 1, 2, 3), epochs=3, bits=8, scale=None)  # a dynamic scale: statistics, then a learned value
    fresh = run_sweep(specs[:2], data_root=tiny_root, results_dir=tmp_path / "fresh", device="cpu", progress=False,
                      pack=2)
    real = packs.train_pack

    def killed_after_epoch_1(*a, **k):
        def on_epoch(epoch, entries):
            if epoch == 1:
                raise _Killed
        return real(*a, **{**k, "on_epoch": on_epoch})

    monkeypatch.setattr(packs, "train_pack", killed_after_epoch_1)
    results = tmp_path / "killed"
    with pytest.raises(_Killed):
        run_sweep(specs[:2], data_root=tiny_root, results_dir=results, device="cpu", progress=False, pack=2)
    partial = list((results / "partial").glob("pack-*"))
    assert len(partial) == 1 and json.loads((partial[0] / packs.MEMBERS).read_text()) == sorted(fresh.key.unique())
    assert torch.load(partial[0] / "checkpoint.pt", weights_only=False)["epoch"] == 1
    epochs = []

    def counting(*a, **k):
        return real(*a, **{**k, "on_epoch": lambda e, entries: epochs.append((len(a[0]), e))})

    monkeypatch.setattr(packs, "train_pack", counting)
    # four networks to train with packs of up to 4: the interrupted pack of two goes on as it was, the others pack
    resumed = run_sweep(specs, data_root=tiny_root, results_dir=results, device="cpu", progress=False, pack=4)
    assert epochs == [(2, 2), (2, 3), (2, 1), (2, 2), (2, 3)]
    cols = ["key", "sigma", "repeat", "accuracy", "clean_accuracy", "pack", "code"]
    first = resumed[resumed.key.isin(fresh.key)].reset_index(drop=True)
    assert first[cols].equals(fresh[cols])
    assert not list((results / "partial").glob("pack-*"))


def test_a_failed_pack_is_reported_and_its_networks_train_alone(tiny_root, tmp_path, monkeypatch):
    log = tmp_path / "progress.txt"
    monkeypatch.setenv("PAPERLIB_PROGRESS", str(log))

    def broken(*a, **k):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(packs, "train_pack", broken)
    df = run_sweep(_specs((0, 1)), data_root=tiny_root, results_dir=tmp_path, device="cpu", progress=False, pack=4)
    assert df.error.isna().all() and df.trained.all() and set(df.pack) == {1}
    assert "pack 1/1: 2 lenet5 8-bit s=1 networks (seeds 0-1): FAILED (RuntimeError: CUDA out of memory); they train " \
           "alone" in log.read_text()


def test_a_pack_made_entry_of_other_pack_code_is_stale(tiny_root, tmp_path, monkeypatch):
    import warnings

    from paperlib import CacheWarning

    df = run_sweep(_specs((0, 1)), data_root=tiny_root, results_dir=tmp_path, device="cpu", progress=False, pack=4)
    assert set(df.pack) == {2}
    changed = {**code_fingerprint(packed=True), "code": "0123456789abcdef"}
    changed["modules"] = {**changed["modules"], "pack": "0123456789abcdef"}
    real = experiment.code_fingerprint
    monkeypatch.setattr(experiment, "code_fingerprint", lambda packed=False: changed if packed else real())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run(_specs((0,))[0], tiny_root, tmp_path, "cpu", progress=False)
    assert res.trained and res.pack == 1  # moved aside and trained again, alone
    assert any(issubclass(w.category, CacheWarning) and "changed: pack" in str(w.message) for w in caught)


def test_packs_on_an_executor_give_the_in_process_numbers(tiny_root, tmp_path):
    import concurrent.futures as cf
    import multiprocessing as mp

    specs = _specs((0, 1, 2))
    here = run_sweep(specs, data_root=tiny_root, results_dir=tmp_path / "here", device="cpu", progress=False, pack=2)
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:  # worker processes, as Dask's
        there = run_sweep(specs, ex, data_root=tiny_root, results_dir=tmp_path / "there", device="cpu",
                          progress=False, pack=2)
    assert sorted(here.drop_duplicates("key").pack) == [1, 2, 2]
    cols = ["key", "sigma", "repeat", "accuracy", "clean_accuracy", "pack", "trained"]
    assert there[cols].equals(here[cols])


def test_a_caption_says_which_networks_trained_in_packs():
    import pandas as pd

    from paperlib.paper.session import packed_networks

    df = pd.DataFrame({"key": ["a", "a", "b", "c", "d"], "pack": [4, 4, 3, 1, None]})
    assert packed_networks(df) == "2 of 3 networks trained in packs of up to 4 (docs/protocol.md §12)"
    assert packed_networks(df.assign(pack=1)) == "" and packed_networks(df.drop(columns="pack")) == ""


def test_a_long_pack_reports_its_epochs_and_the_time_left(tmp_path, monkeypatch):
    log = tmp_path / "progress.txt"
    monkeypatch.setenv("PAPERLIB_PROGRESS", str(log))
    specs = _resolved(_specs((0, 1), epochs=3))
    on_epoch = packs.epoch_lines(specs, 2, 5, every_s=0.0)
    for epoch in (2, 3):  # a pack resumed after its first epoch
        on_epoch(epoch, [])
    lines = log.read_text().splitlines()
    assert lines[0].startswith("pack 2/5: epoch 2/3 of 2 lenet5 8-bit s=1 networks (seeds 0-1); about ")
    assert lines[0].endswith(" left") and lines[1] == "pack 2/5: epoch 3/3 of 2 lenet5 8-bit s=1 networks (seeds 0-1)"
    quiet = packs.epoch_lines(specs, 1, 1, every_s=3600.0)
    quiet(1, [])
    quiet(2, [])
    assert len(log.read_text().splitlines()) == 2  # within the interval: no line but after the last epoch
    quiet(3, [])
    assert log.read_text().splitlines()[-1] == "pack 1/1: epoch 3/3 of 2 lenet5 8-bit s=1 networks (seeds 0-1)"
