"""The headline comparison (fb.stats.headline): is the fractal arm closer to SGD than the posterior
is, beyond SGD's own split-half noise floor? Planted runs with known answers."""

import dataclasses

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.model.predict import class_probabilities
from fractalbayes.stats.headline import headline, verdict


@pytest.fixture(scope="module")
def planted(conjugate):
    """Runs of the conjugate target whose draws are exact posterior draws, shifted by a planted
    amount: ``shifted(s)`` is N(mu + s * sd_0 e_0, Sigma), 4 chains x 500 independent draws."""
    target, mean, cov = conjugate
    shell = fb.sample(target, "sgld", num_chains=4, num_samples=500, burn_in=0, step_size=1e-4, seed=0)
    sd0 = float(np.sqrt(cov[0, 0]))

    def shifted(shift: float, seed: int) -> fb.Run:
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal(mean + np.array([shift * sd0, 0, 0]), cov, size=(4, 500))
        return dataclasses.replace(shell, positions=draws.astype(np.float32), sites={"w": draws[..., :3]})
    return shifted


def test_verdict_rule():
    assert verdict(0.1, 0.5, 0.2) == "yes" and verdict(0.5, 0.1, 0.2) == "no"
    assert verdict(0.3, 0.4, 0.2) == "undetermined (within noise floor)"
    assert verdict(float("nan"), 0.4, 0.2).startswith("undetermined")


def test_planted_answers_in_weight_space(planted):
    sgd = planted(0.0, 1)
    # fractal from SGD's law, posterior 5 sd away: d(P, S) is about 5 sd * (mean |cos| of a random
    # direction in 3-D = 1/2) = 2.5 sd, the floor (sliced W1 between two halves of 1000 independent
    # draws) about sd * sqrt(2 / 1000) * 0.8 ~ 0.04 sd: "yes" by a margin of ~60 floors
    yes = headline({"sgd": sgd, "fractal": planted(0.0, 2), "nuts": planted(5.0, 3)})
    assert yes.table.loc["weights", "verdict"] == "yes"
    assert list(yes.table.index) == ["weights"]  # no probe: the function and basin views need one
    no = headline({"sgd": sgd, "fractal": planted(5.0, 2), "nuts": planted(0.0, 3)})
    assert no.table.loc["weights", "verdict"] == "no"
    # both from SGD's law: the two distances are noise of the floor's size (each from 2000 + 2000
    # draws, the floor from 1000 + 1000: about sqrt(2) larger), so their gap stays inside it
    same = headline({"sgd": sgd, "fractal": planted(0.0, 2), "nuts": planted(0.0, 3)})
    row = same.table.loc["weights"]
    assert row.verdict == "undetermined (within noise floor)", row
    assert "closer: yes" in str(yes) and str(yes).startswith("Is fractal's distribution closer to sgd's")


def test_planted_answers_in_function_space_and_basins(logistic):
    """Logistic regression: a slope flipped in sign predicts the opposite class everywhere, a
    different basin of the function; the fractal arm keeps SGD's function."""
    shell = fb.sample(logistic, "sgld", num_chains=4, num_samples=200, burn_in=300, step_size=1e-3, seed=0)
    flipped = dataclasses.replace(shell, positions=-shell.positions)
    twin = fb.sample(logistic, "sgld", num_chains=4, num_samples=200, burn_in=300, step_size=1e-3, seed=1)
    probe = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    answer = headline({"sgd": shell, "fractal": twin, "nuts": flipped}, probe=probe)
    assert list(answer.table.index) == ["function", "basins", "weights"]
    assert (answer.table["verdict"] == "yes").all(), answer.table
    # sigmoid(-z) = 1 - sigmoid(z): the flipped arm's mean predictive is 1 - SGD's, so its TV to
    # SGD is exactly mean_i |2 pbar_i - 1| (all 800 draws enter: 200 per chain < max_draws / 4)
    pbar = class_probabilities(logistic, shell.positions.reshape(-1, 3), probe)[..., 1].mean(0)
    assert answer.table.loc["function", "posterior_to_sgd"] == pytest.approx(np.mean(np.abs(2 * pbar - 1)), abs=1e-5)


def test_bad_arms_are_refused(planted):
    runs = {"sgd": planted(0.0, 1), "fractal": planted(0.0, 2), "nuts": planted(0.0, 3)}
    with pytest.raises(fb.errors.InputError, match="fractal arm 'fr' is not among"):
        headline(runs, fractal="fr")
    with pytest.raises(fb.errors.InputError, match="three different arms"):
        headline(runs, fractal="sgd")


@pytest.mark.slow
def test_quick_suite_states_the_headline_first(tmp_path):
    """The shipped quick suite (about 35 s on 2 cores): its report opens with the verdict, which
    asks the headline question and answers it once per view."""
    import subprocess
    import sys
    from importlib import resources

    suite = resources.files("fractalbayes.suites") / "quick.toml"
    out = tmp_path / "quick"
    run = subprocess.run([sys.executable, "-m", "fractalbayes", "run", str(suite), "--out", str(out)],
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "fractalbayes", "report", str(out)], capture_output=True,
                            text=True, timeout=300, check=False)
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = (out / "summary.md").read_text()
    assert markdown.index("## Verdict") < markdown.index("## Cells")
    assert "**Is fractal's distribution closer to sgd's than nuts's is, beyond the noise floor?**" in markdown
    for view in ("function (predictive_tv)", "basins (basin_js", "weights (sliced_wasserstein)"):
        line = next(line for line in markdown.splitlines() if line.startswith(f"- {view}"))
        assert line.split("closer: ")[1] in ("yes", "no", "undetermined (within noise floor)"), line
    assert "Against nuts: " in markdown and "Against sgd: " in markdown
