"""The prose cannot contradict the numbers: README.md's results section and docs/results.md against the committed
CSVs and executed notebooks (their verdicts are generated, :mod:`paperlib.paper.verdicts`; their numbers checked)."""
import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from paperlib.paper import pcm_device
from paperlib.paper.verdicts import folder_verdicts, stale_blocks, summary_line

ROOT = Path(__file__).resolve().parents[1]
README, RESULTS = ROOT / "README.md", ROOT / "docs" / "results.md"
#: The profiles whose figures are committed (the Makefile's COMMITTED_FIGURES).
COMMITTED = re.search(r"^COMMITTED_FIGURES := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()


def summary(folder: str, name: str, arch: str = "lenet5") -> pd.DataFrame:
    """The summary CSV ``name`` of ``folder``, ``arch``'s rows, indexed by (variant, regime)."""
    table = pd.read_csv(ROOT / folder / name, comment="#")
    return table[table.arch == arch].set_index(["variant", "regime"])


def unit(printed: str) -> float:
    """The last printed digit's unit: 0.001 for "0.005", 0.1 for "65.4"."""
    return 10.0 ** -len(printed.split(".")[1]) if "." in printed else 1.0


def pct(value: float, err: float | None = None) -> str:
    return f"{100 * value:.1f}%" if err is None else f"{100 * value:.1f} ± {100 * err:.1f}%"


# --- verdicts ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc", [README, RESULTS], ids=["README.md", "docs/results.md"])
def test_the_verdicts_in_the_prose_are_the_notebooks(doc):
    assert stale_blocks(doc, ROOT) == [], f"{doc.name}: run python -m paperlib.paper.verdicts {doc.name}"


def test_every_committed_profile_has_its_verdicts_in_the_results_and_the_readme():
    results, readme = RESULTS.read_text(), README.read_text()
    for folder in COMMITTED:
        assert f"<!-- verdicts: {folder} -->" in results, f"docs/results.md lists no verdicts of {folder}"
        assert f"<!-- verdict-summary: {folder} " in readme, f"README.md summarizes no verdicts of {folder}"


def test_a_changed_verdict_makes_the_prose_stale(tmp_path):
    """The check can fail: one verdict changed in a copy of a committed notebook."""
    for profile in ("lenet-full", "quick"):
        shutil.copytree(ROOT / "figures" / profile / "notebooks", tmp_path / "figures" / profile / "notebooks")
    folder = tmp_path / "figures" / "lenet-full"
    doc = tmp_path / "results.md"
    doc.write_text(RESULTS.read_text() + "\n" + README.read_text())
    assert stale_blocks(doc, tmp_path) == []
    nb = folder / "notebooks" / "01_fig2_lenet_qat.ipynb"
    text = nb.read_text()
    assert "| 3 | lenet5: 8-bit beats 4-bit" in text
    nb.write_text(re.sub(r"(\| 3 \| lenet5: 8-bit beats 4-bit[^|]*\| )\*\*does not hold\*\*", r"\1**holds**", text))
    assert set(stale_blocks(doc, tmp_path)) == {"figures/lenet-full", "figures/lenet-full lenet5"}
    assert "3 holds" in summary_line(folder, "lenet5")


def test_a_quote_of_what_a_run_shows_follows_its_notebook(tmp_path):
    """A ``shows`` block is the last cell's printed text of its executed notebook; changing a number there makes the
    prose stale, and rendering brings it back."""
    import json

    nb = {"cells": [{"cell_type": "code", "outputs": [{"name": "stdout", "text": ["first 12.5%\n", "second\n"]}]}]}
    path = tmp_path / "figures" / "x" / "notebooks" / "08.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- shows: figures/x/notebooks/08.ipynb -->\nold\n<!-- /shows -->\nafter\n")
    assert stale_blocks(doc, tmp_path) == ["figures/x/notebooks/08.ipynb"]
    from paperlib.paper.verdicts import render

    doc.write_text(render(doc.read_text(), tmp_path))
    assert "> first 12.5%\n>\n> second\n<!-- /shows -->" in doc.read_text() and stale_blocks(doc, tmp_path) == []
    nb["cells"][0]["outputs"][0]["text"][0] = "first 13.0%\n"
    path.write_text(json.dumps(nb))
    assert stale_blocks(doc, tmp_path) == ["figures/x/notebooks/08.ipynb"]
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "execute_result", "data": {
        "text/plain": ["<Markdown>"], "text/markdown": ["**LeNet-5**\n", "- fp32: median 0.5.\n"]}}]}]}
    path.write_text(json.dumps(nb))  # a returned Markdown (notebooks 05-07) is quoted line by line
    doc.write_text(render(doc.read_text(), tmp_path))
    assert "> **LeNet-5**\n> - fp32: median 0.5.\n<!-- /shows -->" in doc.read_text()


def test_the_verdicts_are_read_from_every_committed_notebook_with_findings():
    for folder in COMMITTED:
        found = {v.notebook for v in folder_verdicts(ROOT / folder)}
        for nb in (ROOT / folder / "notebooks").glob("*.ipynb"):
            has_table = "| finding | statement | verdict |" in json.dumps(json.loads(nb.read_text()))
            assert (nb.name in found) == has_table, f"{nb}: its findings table was not read"


# --- numbers -----------------------------------------------------------------------------------------------------

def pcm_claims(folder: str) -> dict[str, str]:
    """The numbers README.md gives of notebook 08 at ``folder`` (its ranking and frame CSVs): text -> what it says."""
    table = pd.read_csv(ROOT / folder / "pcm_lenet5_ranking.csv", comment="#")
    frame = pd.read_csv(ROOT / folder / "pcm_lenet5.csv", comment="#")
    ref = table.set_index("method").loc["fp32"]
    best = table.sort_values("scale_mid", ascending=False).iloc[0]
    s64 = table.set_index("method").loc["8-bit s=64"]
    others = table[table.method != "fp32"]
    g, sc = others.sigma_mid / ref.sigma_mid, others.scale_mid / ref.scale_mid
    rho = pcm_device.rank_agreement(table)
    t = frame[frame.panel == "time"]
    first, year = pcm_device.TIMES[0], pcm_device.TIMES[-1]
    at = {(w, c): t[(t.t_inference == w) & (t.compensation == c)].accuracy.mean()
          for w in (first, year) for c in (True, False)}
    noisy = table[table.method.str.contains("noisy-trained")].clean
    return {
        f"{100 * noisy.min():.0f}–{100 * noisy.max():.0f}% clean against fp32's {ref.clean:.0%}":
            "PCM: the noisy-trained networks' clean accuracy",
        f"{best.method} tolerates {best.scale_mid:.2f}× the device's noise at one day, "
        f"{best.scale_mid / ref.scale_mid:.1f}× fp32's": "PCM: the most tolerant method, beside fp32",
        f"fp32 falls halfway after {ref.drift_half_time_s / 60:.0f} min": "PCM: fp32's drift half time",
        f"raises Gaussian `sigma_mid` {s64.sigma_mid / ref.sigma_mid:.1f}× over fp32 but tolerates "
        f"{s64.scale_mid / ref.scale_mid:.2f}×": "PCM: 8-bit s=64 Gaussian against device",
        f"{g.min():.2g}–{g.max():.2g}× become {sc.min():.2g}–{sc.max():.2g}×": "PCM: gains over fp32",
        f"Spearman's rho {rho['scale']:.2f}": "PCM: rank agreement",
        f"from {at[first, True]:.1%} at 1 s to {at[year, True]:.1%} after a year; without, to {at[year, False]:.1%}":
            "PCM: mean accuracy over time",
    }


def readme_claims() -> dict[str, str]:
    """The numbers of README.md's results section, each computed from the committed CSVs: text -> what it says."""
    full = summary("figures/lenet-full", "fig2_lenet5_summary.csv")
    fp32, s8 = full.loc[("fp32", "clean")], full.loc[("8-bit s=8", "clean")]
    noisy = summary("figures/lenet-full", "fig3_summary.csv")
    nfp, ndyn, ns1 = (noisy.loc[(v, "noisy")] for v in ("fp32", "8-bit dynamic", "8-bit s=1"))
    quick = summary("figures/quick", "fig2_lenet5_summary.csv")
    q32, q8 = quick.loc[("fp32", "clean")], quick.loc[("8-bit s=8", "clean")]
    qnoisy = summary("figures/quick", "fig3_summary.csv").loc[("fp32", "noisy")]
    resnet = pd.read_csv(ROOT / "figures/quick/table1_resnet18.csv", comment="#").set_index("variant")
    s512 = [full.loc[(f"{b}-bit s=512", "clean")].peak_acc for b in (4, 8)]
    gap = 100 * (fp32.peak_acc - s8.peak_acc)
    gain = nfp.sigma_mid / fp32.sigma_mid
    return {
        **pcm_claims("figures/lenet-full"),
        f"reaches {pct(fp32.peak_acc, fp32.peak_acc_err)}": "lenet-full fp32 peak",
        f"`sigma_mid` {fp32.sigma_mid:.3f} ± {fp32.sigma_mid_err:.3f}": "lenet-full fp32 sigma_mid",
        f"raises it {s8.sigma_mid / fp32.sigma_mid:.1f}×": "lenet-full 8-bit s=8 over fp32",
        f"{gap:.1f} ± {100 * math.hypot(fp32.peak_acc_err, s8.peak_acc_err):.1f} points": "lenet-full s=8 cost",
        f"up to s = 64 ({full.loc[('4-bit s=64', 'clean')].sigma_mid:.2f})": "lenet-full 4-bit s=64",
        f"falls to {100 * min(s512):.0f}–{100 * max(s512):.0f}%": "lenet-full s=512",
        f"`sigma_mid` {gain:.1f}× ±\n{100 * math.hypot(nfp.rel_err, fp32.rel_err):.0f}% to {nfp.sigma_mid:.2f}":
            "lenet-full noisy-training gain",
        (f"8-bit dynamic reaches {ndyn.sigma_mid:.2f}, {ndyn.sigma_mid / nfp.sigma_mid:.2f}× fp32's\n± "
         f"{100 * math.hypot(ndyn.rel_err, nfp.rel_err):.0f}%"): "lenet-full 8-bit dynamic noisy-trained",
        ("8-bit s = 1's\nnoisy-trained curve has no midpoint" if not ns1.fit_ok else f"{ns1.sigma_mid:.2f}"):
            "lenet-full 8-bit s=1 noisy-trained",
        f"reaches {pct(q32.peak_acc, q32.peak_acc_err)} instead of 75%": "quick fp32 peak",
        f"({q32.sigma_mid:.3f} → {q8.sigma_mid:.2f};": "quick fp32 -> 8-bit s=8 sigma_mid",
        f"raises `sigma_mid` {q8.sigma_mid / q32.sigma_mid:.1f}× over fp32": "quick 8-bit s=8 ratio",
        f"cost of {100 * (q32.peak_acc - q8.peak_acc):.0f} points": "quick s=8 cost",
        f"`sigma_mid` only {qnoisy.sigma_mid / q32.sigma_mid:.1f}×": "quick noisy-training gain",
        f"at {float(resnet.loc['fp32', 'peak acc. (%)'].split(' ±')[0]):.0f}% after 4 epochs": "quick ResNet-18 fp32",
    }


def test_the_readme_numbers_are_the_committed_csvs():
    text = README.read_text()
    section = text[text.index("## Results"):text.index("## The library in one screen")]
    missing = {claim: what for claim, what in readme_claims().items() if claim not in section}
    assert not missing, f"README.md's results section does not say what the CSVs say: {missing}"


ROW = re.compile(r"^\| (fp32|dynamic|s = [\d.]+) \| (.+?) \| (.+?) \|$", re.M)


@pytest.mark.parametrize("profile", ["lenet-full", "quick"])
def test_the_fig2_tables_of_the_results_are_the_committed_csvs(profile):
    """Every cell "peak ± err% / sigma_mid ± err" of docs/results.md's Fig. 2 table of ``profile``."""
    text = RESULTS.read_text()
    start = text.index(f"## `{profile}`")
    table = text[text.index("| variant | 4-bit | 8-bit |", start):]
    table = table[:table.index("\n\n")]
    s = summary(f"figures/{profile}", "fig2_lenet5_summary.csv")
    checked = 0
    for name, *cells in ROW.findall(table):
        for bits, cell in zip((4, 8), cells):
            m = re.match(r"([\d.]+) ± ([\d.]+)% / ([\d.]+) ± ([\d.]+)", cell)
            if not m:
                continue  # "(same network)", "chance (...)"
            scaling = "dynamic" if name == "dynamic" else name.replace(" ", "")
            variant = "fp32" if name == "fp32" else f"{bits}-bit {scaling}"
            row = s.loc[(variant, "clean")]
            truths = (100 * row.peak_acc, 100 * row.peak_acc_err, row.sigma_mid, row.sigma_mid_err)
            for text, true in zip(m.groups(), truths):
                assert abs(float(text) - true) <= 0.5 * unit(text) + 1e-12, f"{profile} {variant}: {text}, CSV {true}"
            checked += 1
    assert checked >= 8, f"only {checked} cells of the {profile} table were read"
