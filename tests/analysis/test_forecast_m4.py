"""run_m4 and coverage on a tiny generated M4-format file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from perfintel.evaluation.m4 import coverage, read_m4, run_m4

H = 48


def write_m4(path: Path, rows: list[tuple[str, np.ndarray]], width: int) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow([f"V{i}" for i in range(1, width + 2)])
        for sid, v in rows:
            cells = [f"{x:g}" for x in v] + [""] * (width - v.size)
            fh.write(f'"{sid}",' + ",".join(cells) + "\n")


def make(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    full = {}
    for i, n in enumerate((400, 500, 420)):
        t = np.arange(n + H)
        full[f"T{i + 1}"] = 100 + 20 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 2, t.size)
    train = tmp_path / "train.csv"
    test = tmp_path / "test.csv"
    write_m4(train, [(k, v[:-H]) for k, v in full.items()], 500)
    write_m4(test, [(k, v[-H:]) for k, v in full.items()], H)
    return train, test, full


def test_run_m4_writes_forecasts_intervals_plots(tmp_path: Path) -> None:
    train, test, full = make(tmp_path)
    rows = dict(read_m4(train))
    assert [v.size for v in rows.values()] == [400, 500, 420]
    out, iv, plots = tmp_path / "f.csv", tmp_path / "i.csv", tmp_path / "plots"
    seen: list[tuple[int, int]] = []
    run_m4(train, out, intervals_csv=iv, plots_dir=plots, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3, 3)
    with open(out) as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["id", *[f"F{i}" for i in range(1, H + 1)]]
    assert [r[0] for r in table[1:]] == ["T1", "T2", "T3"]
    fc = np.array([[float(x) for x in r[1:]] for r in table[1:]])
    truth = np.array([full[k][-H:] for k in ("T1", "T2", "T3")])
    assert np.mean(np.abs(fc - truth)) < 5
    with open(iv) as fh:
        ivs = list(csv.reader(fh))
    assert ivs[0][:3] == ["id", "level", "side"]
    assert len(ivs) == 1 + 3 * 4
    assert {(r[1], r[2]) for r in ivs[1:]} == {
        ("80", "lo"),
        ("80", "hi"),
        ("95", "lo"),
        ("95", "hi"),
    }
    assert sorted(p.name for p in plots.iterdir()) == ["T1.png", "T2.png", "T3.png"]
    cov = coverage(iv, test)
    assert sorted(cov) == [80, 95]
    assert 0.5 <= cov[80] <= cov[95] <= 1.0


def test_module_entry_point(tmp_path: Path) -> None:
    from perfintel.evaluation.m4 import main

    train, test, _ = make(tmp_path)
    out, iv = tmp_path / "f.csv", tmp_path / "i.csv"
    assert (
        main(
            ["--train", str(train), "--out", str(out), "--intervals", str(iv), "--test", str(test)]
        )
        == 0
    )
    assert out.exists() and iv.exists()
