"""`python -m paperlib.runs.compare`: two renders of one figure's sweep table, network by network, against numbers
set by hand (midpoints of Eq. 1 curves, clean accuracies in test images)."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paperlib.evaluate import DEFAULT_SIGMAS
from paperlib.midpoint import logistic
from paperlib.runs import compare

ROOT = Path(__file__).resolve().parents[1]


def _network(key, seed, clean, sigma_mid, *, bits=8, scale=1.0, test_subset=2000, draws=2):
    """Sweep rows of one network whose noise curve is Eq. 1 with its midpoint at ``sigma_mid`` (no noise)."""
    acc = logistic(np.log10(DEFAULT_SIGMAS), clean, 6.0, math.log10(sigma_mid))
    return pd.DataFrame({
        "arch": "lenet5", "bits": bits, "scale": scale, "sigma_train": 0.0, "seed": seed, "epochs": 8,
        "test_subset": test_subset, "noise_kind": "additive", "noise_site": math.nan, "key": key,
        "clean_accuracy": clean, "revision": "abc1234", "device": "cpu",
        "sigma": np.repeat(DEFAULT_SIGMAS, draws), "repeat": np.tile(np.arange(draws), len(DEFAULT_SIGMAS)),
        "accuracy": np.repeat(acc, draws),
    })


def _tables():
    a = pd.concat([_network("k0", 0, 0.45, 0.30), _network("k1", 1, 0.46, 0.36),
                   _network("k2", 0, 0.40, 1.0, scale=8.0), _network("only-a", 1, 0.40, 1.0, scale=8.0)])
    b = pd.concat([_network("k0", 0, 0.45, 0.30),  # the same network, to the last bit
                   _network("k1", 1, 0.4615, 0.396),  # 3 of 2,000 test images and 10% apart
                   _network("k2", 0, 0.40, 0.9, scale=8.0), _network("only-b", 2, 0.4, 1.0)])
    return a, b


def test_networks_are_matched_by_key_and_their_differences_are_the_hand_set_ones():
    a, b = _tables()
    cmp = compare.compare_sweeps(a, b).set_index("key")
    assert sorted(cmp.index) == ["k0", "k1", "k2"]
    assert cmp.loc["k0", "identical"] and not cmp.loc["k1", "identical"] and not cmp.loc["k2", "identical"]
    assert cmp.loc["k1", "clean_images"] == 3 and cmp.loc["k0", "clean_images"] == 0
    assert cmp.loc["k0", "sigma_mid_a"] == pytest.approx(0.30, rel=1e-3)
    assert cmp.loc["k1", "sigma_mid_ratio"] == pytest.approx(1.10, rel=1e-3)
    assert cmp.loc["k2", "sigma_mid_ratio"] == pytest.approx(0.90, rel=1e-3)
    assert cmp.loc["k1", "label"] == "lenet5 8-bit s=1" and cmp.loc["k2", "label"] == "lenet5 8-bit s=8"
    assert list(compare.compare_sweeps(a, b).key[:2]) in (["k1", "k2"], ["k2", "k1"])  # largest differences first


def test_the_summary_counts_and_folds_the_ratios_and_gives_the_seed_spread_beside_them():
    a, b = _tables()
    s = compare.reproduction_summary(a, b)
    assert (s["shared"], s["only_a"], s["only_b"], s["identical"]) == (3, 1, 1, 1)
    assert s["clean_images_max"] == 3 and s["clean_images_median"] == 0
    assert s["sigma_mid_compared"] == 3
    assert s["sigma_mid_ratio_max"] == pytest.approx(1 / 0.9, rel=1e-3)  # 0.9 folded above 1 is 1.11, more than 1.10
    assert s["sigma_mid_ratio_median"] == pytest.approx(1.10, rel=1e-3)
    # k0 and k1 are one spec (8-bit s=1) with seeds 0 and 1: 0.30 and 0.36, 20 test images apart
    spread = compare.seed_spread(a)
    row = spread.set_index("label").loc["lenet5 8-bit s=1"]
    assert row.seeds == 2 and row.clean_range_images == 20 and row.sigma_mid_ratio == pytest.approx(1.2, rel=1e-3)
    assert spread.set_index("label").loc["lenet5 8-bit s=8"].sigma_mid_ratio == pytest.approx(1.0, rel=1e-3)
    assert s["seed_sigma_mid_ratio_median"] == pytest.approx(1.1, rel=1e-3)  # the median of 1.2 and 1.0
    text = compare.describe(s)
    assert "3 networks in both tables (1 only in the first, 1 only in the second); 1 of them identical" in text
    assert "1.100x apart in the median, 1.111x at most" in text


def test_a_network_at_chance_has_no_midpoint_and_is_left_out_of_the_ratios():
    a = _network("flat", 0, 0.10, 1.0)
    a["accuracy"] = 0.1
    cmp = compare.compare_sweeps(a, a)
    assert math.isnan(cmp.sigma_mid_a[0]) and math.isnan(cmp.sigma_mid_ratio[0]) and cmp.identical[0]
    s = compare.reproduction_summary(a, a)
    assert s["sigma_mid_compared"] == 0 and math.isnan(s["sigma_mid_ratio_median"])
    assert "sigma_mid" not in compare.describe(s)


def test_tables_without_a_shared_network_or_the_per_network_columns_are_refused_clearly(tmp_path):
    a, b = _tables()
    with pytest.raises(ValueError, match="share no network"):
        compare.compare_sweeps(a[a.key == "only-a"], b[b.key == "only-b"])
    with pytest.raises(ValueError, match="share no network"):  # a table of no rows (a CSV of its header only)
        compare.compare_sweeps(a.iloc[:0], b)
    summary_csv = tmp_path / "fig2_lenet5_summary.csv"
    pd.DataFrame({"variant": ["fp32"], "sigma_mid": [0.3]}).to_csv(summary_csv, index=False)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) key, seed, clean_accuracy, sigma, accuracy; .*not a "
                                         r"summary table"):
        compare.read_sweep_csv(summary_csv)
    assert compare.main([str(summary_csv), str(summary_csv)]) == 2
    assert compare.main([str(tmp_path / "missing.csv"), str(summary_csv)]) == 2


def test_the_committed_fig2_csv_compared_with_itself_is_identical_network_by_network(capsys):
    csv = ROOT / "figures" / "quick" / "fig2_lenet5_qat.csv"
    assert compare.main([str(csv), str(csv)]) == 0
    out = capsys.readouterr().out
    n = compare.read_sweep_csv(csv)["key"].nunique()
    assert f"{n} networks in both tables (0 only in the first, 0 only in the second); {n} of them identical" in out
    assert "1.000x apart in the median, 1.000x at most" in out


def test_two_figure_folders_are_compared_file_by_file_leaving_out_what_is_not_a_sweep_table(tmp_path, capsys):
    a, b = _tables()
    for folder, table in (("ours", a), ("yours", b)):
        (tmp_path / folder).mkdir()
        table.to_csv(tmp_path / folder / "fig2_lenet5_qat.csv", index=False)
        pd.DataFrame({"variant": ["fp32"], "sigma_mid": [0.3]}).to_csv(tmp_path / folder / "fig2_summary.csv",
                                                                        index=False)
    table.to_csv(tmp_path / "yours" / "only_yours.csv", index=False)
    done = compare.compare_folders(tmp_path / "ours", tmp_path / "yours")
    assert [name for name, _ in done] == ["fig2_lenet5_qat.csv"] and done[0][1]["shared"] == 3
    assert compare.main([str(tmp_path / "ours"), str(tmp_path / "yours")]) == 0
    assert "== fig2_lenet5_qat.csv\n3 networks in both tables" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no sweep CSV of the same name"):
        compare.compare_folders(tmp_path / "ours", tmp_path / "empty")


def test_a_failed_run_without_accuracies_is_compared_as_unknown_not_as_an_error():
    a, b = _tables()
    b = b.copy()
    b.loc[b.key == "k2", ["clean_accuracy", "accuracy"]] = math.nan  # the run raised on the second machine
    cmp = compare.compare_sweeps(a, b).set_index("key")
    assert math.isnan(cmp.loc["k2", "clean_images"]) and math.isnan(cmp.loc["k2", "sigma_mid_ratio"])
    assert not cmp.loc["k2", "identical"]
    s = compare.reproduction_summary(a, b)
    assert s["clean_images_max"] == 3 and s["sigma_mid_compared"] == 2


def test_one_network_evaluated_under_two_noise_kinds_is_two_curves_not_one_mixed_curve():
    a = pd.concat([_network("k0", 0, 0.45, 0.30), _network("k0", 0, 0.45, 0.60)])
    a["noise_kind"] = ["additive"] * (len(a) // 2) + ["weight"] * (len(a) // 2)  # as notebook 07's table
    b = a.copy()
    b.loc[b.noise_kind == "weight", "accuracy"] = np.repeat(
        logistic(np.log10(DEFAULT_SIGMAS), 0.45, 6.0, math.log10(0.66)), 2)
    cmp = compare.compare_sweeps(a, b).set_index("label")
    assert len(cmp) == 2 and cmp.loc["lenet5 8-bit s=1", "sigma_mid_a"] == pytest.approx(0.30, rel=1e-3)
    assert cmp.loc["lenet5 8-bit s=1, weight noise", "sigma_mid_ratio"] == pytest.approx(1.1, rel=1e-3)
    assert cmp.loc["lenet5 8-bit s=1", "identical"] and not cmp.loc["lenet5 8-bit s=1, weight noise", "identical"]
    s = compare.reproduction_summary(a, b)
    assert (s["shared"], s["curves"], s["identical"]) == (1, 2, 1)
    assert compare.seed_spread(a).empty  # one seed: no spread, not the two kinds taken for two seeds
    assert "1 networks in both tables (0 only in the first, 0 only in the second), 2 curves of them" in (
        compare.describe(s))
