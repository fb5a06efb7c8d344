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
