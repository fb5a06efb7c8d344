"""A profile's cost on another device comes from that device's measured timings (benchmarks/gpu_check.py's
``budget_timings``), never from an assumed speed-up (benchmarks/paper_budget.py)."""
import json
import re

import pytest

from benchmarks.paper_budget import count, load_timings, main, report
from paperlib import load_profile

KINDS = ("fp32", "qat-dynamic", "qat-constant")


def _gpu_check(path, step=0.01, image=1e-5, archs=("lenet5", "resnet18", "vgg11")):
    data = {"device": "cuda:0", "gpu": "Some GPU", "torch": "2.x",
            "archs": {a: {"budget_timings": {k: [step, image] for k in KINDS}} for a in archs}}
    path.write_text(json.dumps(data))
    return path


def _hours(text):
    return float(re.search(r"\*\*([\d,.]+) device-hours\*\*", text).group(1).replace(",", ""))


def test_device_hours_follow_the_measured_timings(tmp_path):
    p = load_profile("paper-dryrun")
    tallies = count(p)
    steps = sum(n for t in tallies.values() for n in t.train_steps.values())
    images = sum(n for t in tallies.values() for n in t.forwards.values())
    timings, where = load_timings(_gpu_check(tmp_path / "a.json", step=2.0, image=0.001))
    text = report(p, tallies, timings, where)
    assert "measured on Some GPU, torch 2.x (python -m benchmarks.gpu_check" in text and "CPU core-hours" not in text
    assert _hours(text) == pytest.approx(round((steps * 2.0 + images * 0.001) / 3600), abs=1)


def test_timings_that_lack_an_architecture_or_are_not_gpu_check_output_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--profile", "smoke", "--timings", str(_gpu_check(tmp_path / "b.json", archs=("lenet5",)))])
    assert "has no timings of resnet18 fp32" in capsys.readouterr().err
    (tmp_path / "c.json").write_text(json.dumps({"archs": {"lenet5": {}}}))
    with pytest.raises(ValueError, match=r"holds no budget_timings of python -m benchmarks.gpu_check"):
        load_timings(str(tmp_path / "c.json"))


def test_packs_save_what_the_measured_pack_speedups_say():
    from benchmarks.paper_budget import Tally, pack_seconds, speedup_at

    assert [speedup_at({2: 2.0, 4: 8.0}, m) for m in (1, 2, 3, 4, 64)] == [1.0, 2.0, 2.0, 8.0, 8.0]
    assert speedup_at({8: 5.0}, 4) == 1.0  # below every measured size: no gain assumed
    t = Tally(pack_trainings=[("g", ("lenet5", "fp32"), 100)] * 10 + [("h", ("lenet5", "fp32"), 100)])
    timings = {("lenet5", "fp32"): (0.01, 1e-5)}
    # ten networks in packs of at most 4: 4 + 3 + 3 (as the engine splits them); the lone "h" network trains alone
    saved = pack_seconds(t, timings, {("lenet5", "fp32"): {2: 2.0, 4: 8.0}}, {"lenet5": 4})
    assert saved == pytest.approx(4 * 100 * 0.01 * (1 - 1 / 8) + 2 * 3 * 100 * 0.01 * (1 - 1 / 2))
    assert pack_seconds(t, timings, {("lenet5", "fp32"): {2: 2.0, 4: 8.0}}, {"lenet5": 1}) == 0  # no packs


def test_a_report_with_pack_timings_gives_hours_with_packs(tmp_path, capsys):
    path = _gpu_check(tmp_path / "p.json", step=500.0, image=0.001)
    data = json.loads(path.read_text())
    data["archs"]["lenet5"]["pack"] = {v: {"speedup": {"8": 1.0, "32": 1.0}} for v in
                                       ("fp32", "int8_dynamic", "int8_constant")}
    path.write_text(json.dumps(data))
    assert main(["--profile", "smoke", "--timings", str(path)]) == 0
    flat = capsys.readouterr().out
    hours = [float(h.replace(",", "")) for h in re.findall(r"\*\*([\d,.]+) device-hours\*\*", flat)]
    assert len(hours) == 2 and hours[0] == hours[1]  # measured speed-up 1: packs save nothing
    for v in data["archs"]["lenet5"]["pack"].values():
        v["speedup"] = {"2": 1e12}
    path.write_text(json.dumps(data))
    assert main(["--profile", "smoke", "--timings", str(path)]) == 0
    fast = capsys.readouterr().out
    with_packs = [float(h.replace(",", "")) for h in re.findall(r"\*\*([\d,.]+) device-hours\*\*", fast)][1]
    assert with_packs < hours[0] and "at most lenet5 32, vgg11 1, resnet18 1 networks per pack" in fast
    assert main(["--profile", "smoke", "--timings", str(path), "--pack", "1"]) == 0
    alone = [float(h.replace(",", "")) for h in re.findall(r"\*\*([\d,.]+) device-hours\*\*", capsys.readouterr().out)]
    assert alone[0] == alone[1] == hours[0]
    assert main(["--profile", "smoke", "--timings", str(_gpu_check(tmp_path / "q.json"))]) == 0
    assert "With packs: not projected (the timings file holds no pack timings" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--profile", "smoke", "--pack", "0", "--timings", str(path)])
    assert "--pack takes a whole number >= 1" in capsys.readouterr().err
