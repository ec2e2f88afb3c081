"""toy.compare_table: the number format, and every cell of ``compare.md`` read back from a hand-made result."""

import math

from toy.compare_summary import mean_std
from toy.compare_table import fmt, frames, markdown_table


def test_fmt_and_frames():
    assert fmt(mean_std([1.0, 2.0, 3.0])) == "2 ± 1"
    assert fmt(mean_std([0.12345])) == "0.123" and fmt(mean_std([math.nan])) == "–"
    assert fmt(mean_std([0.1, 0.2])) == "0.15 ± 0.071"  # std sqrt(2 · 0.05² / 1) = 0.0707
    assert frames([mean_std([0.5]), mean_std([1.0, 1.5])]) == "0.50 / 1.25"


def _stage(ed: list[float], ratios: list[list[float]]) -> dict:
    """A summary block as compare_summary writes it, from per-seed values."""
    out = {m: mean_std([math.nan] * len(ed)) for m in ("off_manifold_fraction", "mode_coverage", "variance_ratio")}
    out["energy_distance"] = mean_std(ed)
    out["variance_ratio_per_frame"] = [mean_std(list(frame)) for frame in zip(*ratios)]
    return out


def test_markdown_table_cells():
    seconds = {"base": mean_std([1.0, 3.0]), "dmd": mean_std([2.0, 2.0]), "total": mean_std([3.0, 5.0])}
    result = {
        "preset": "quick",
        "dataset": "mixture",
        "seeds": [0, 1],
        "recipes": {
            "self-forcing": {
                "summary": {
                    "init": _stage([0.3, 0.1], [[0.5, 1.0], [0.7, 1.2]]),
                    "final": _stage([0.01, 0.03], [[1.0, 1.0], [1.0, 1.0]]),
                    "seconds": seconds,
                }
            }
        },
        "teachers": {},
        "base": {**_stage([0.0, 0.0], [[1.0], [1.0]]), "velocity_error": mean_std([0.2]), "seconds": mean_std([4.0])},
        "energy_noise_floor": mean_std([-0.001, 0.001, 0.003]),
    }
    lines = markdown_table(result).splitlines()
    recipe_row = next(line for line in lines if line.startswith("| self-forcing | 0.2"))
    # energy distance 0.2 ± 0.141 (std of 0.3, 0.1) → 0.02 ± 0.0141; variance ratio per frame 0.6 / 1.1 → 1 / 1
    assert recipe_row == "| self-forcing | 0.2 ± 0.14 → 0.02 ± 0.014 | – → – | – → – | 0.60 / 1.10 → 1.00 / 1.00 |"
    time_row = next(line for line in lines if line.startswith("| self-forcing | 2"))
    assert time_row == "| self-forcing | 2 ± 1.4 | – | – | 2 ± 0 | 4 ± 1.4 |"
    assert "| 0.2 | 0 ± 0 | – | – | 1.00 | 4 |" in lines  # the base model's row
    assert any("0.001 ± 0.002 over 3 draws" in line for line in lines)  # the noise floor
