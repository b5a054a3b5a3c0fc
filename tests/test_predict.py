"""Function-space outputs of draws (fractalbayes.model.predict) against hand computations."""

import functools

import numpy as np
import pytest
from scipy.special import expit

import fractalbayes as fb
from fractalbayes.model.predict import class_probabilities, predictive_mean, predictive_samples

PROBE = np.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5], [3.0, 3.0]], np.float32)


def positions_of(target, shape, seed):
    return np.random.default_rng(seed).normal(size=(*shape, target.dim)).astype(np.float32)


def test_class_probabilities_of_a_logistic_regression(logistic):
    positions = positions_of(logistic, (2, 3), 0)  # (chain, draw, param)
    probs = class_probabilities(logistic, positions, PROBE)
    assert probs.shape == (2, 3, len(PROBE), 2)
    for c in range(2):
        for d in range(3):
            sites = logistic.constrain(positions[c, d])
            p1 = expit(PROBE @ np.asarray(sites["w"]) + float(sites["b"]))  # sigmoid(x w + b)
            np.testing.assert_allclose(probs[c, d], np.stack([1 - p1, p1], -1), rtol=1e-5, atol=1e-6)
    # a dict of data arguments is the same probe
    np.testing.assert_allclose(class_probabilities(logistic, positions, {"x": PROBE}), probs)


def test_class_probabilities_of_a_softmax_classifier():
    x = np.random.default_rng(1).normal(size=(30, 2)).astype(np.float32)
    model = functools.partial(fb.models.mlp_classifier, widths=(3,), num_classes=3)
    target = fb.from_numpyro(model, x, np.arange(30) % 3)
    positions = positions_of(target, (5,), 2)
    probs = class_probabilities(target, positions, PROBE)
    for z, p in zip(positions, probs):
        s = {k: np.asarray(v, np.float64) for k, v in target.constrain(z).items()}
        logits = np.maximum(PROBE @ s["w0"] + s["b0"], 0) @ s["w1"] + s["b1"]
        expected = np.exp(logits - logits.max(-1, keepdims=True))
        np.testing.assert_allclose(p, expected / expected.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_predictive_mean_of_a_linear_regression(conjugate):
    target, _, _ = conjugate
    probe = np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32)
    positions = positions_of(target, (2, 4), 4)
    mean = predictive_mean(target, positions, probe)
    assert mean.shape == (2, 4, 6)
    w = np.stack([np.asarray(target.constrain(z)["w"]) for z in positions.reshape(-1, target.dim)]).reshape(2, 4, 3)
    np.testing.assert_allclose(mean, w @ probe.T, rtol=1e-5, atol=1e-5)  # E[y | x, w] = x w


def test_predictive_samples_scatter_around_the_predictive_mean(conjugate, logistic):
    target, _, _ = conjugate
    probe = np.random.default_rng(5).normal(size=(5, 3)).astype(np.float32)
    draws = 4000
    z = positions_of(target, (), 6)
    positions = np.broadcast_to(z, (2, draws // 2, target.dim))
    samples = predictive_samples(target, positions, probe, seed=0)
    assert samples.shape == (2, draws // 2, 5)
    mean = predictive_mean(target, z[None], probe)[0]
    # y = x w + N(0, 1) noise (noise_scale 1): the mean of 4000 independent draws has standard
    # error 1 / sqrt(4000) = 0.016 at each probe point; 4 SE (two-sided 6e-5 per point).
    flat = samples.reshape(draws, 5)
    assert np.all(np.abs(flat.mean(0) - mean) < 4 / np.sqrt(draws))
    # their variance is the noise's: the sample variance's relative sd is sqrt(2 / 4000) = 0.022; 4 sd
    assert np.all(np.abs(flat.var(0, ddof=1) - 1.0) < 4 * np.sqrt(2 / draws))
    np.testing.assert_array_equal(predictive_samples(target, positions, probe, seed=0), samples)
    assert not np.array_equal(predictive_samples(target, positions, probe, seed=1), samples)
    # Bernoulli draws are 0/1 with mean p: standard error sqrt(p (1 - p) / 4000) <= 0.008; 4 SE
    zl = positions_of(logistic, (), 7)
    coins = predictive_samples(logistic, np.broadcast_to(zl, (draws, logistic.dim)), PROBE, seed=2)
    assert coins.shape == (draws, len(PROBE)) and set(np.unique(coins)) <= {0, 1}
    p = predictive_mean(logistic, zl[None], PROBE)[0]
    assert np.all(np.abs(coins.mean(0) - p) < 4 * np.sqrt(p * (1 - p) / draws) + 1e-9)


def test_bad_sites_and_likelihoods(conjugate, logistic):
    target, _, _ = conjugate
    z = np.zeros((1, target.dim), np.float32)
    with pytest.raises(ValueError, match="site 'w' is not observed; choose one of \\['y'\\]"):
        predictive_mean(target, z, np.zeros((2, 3), np.float32), site="w")
    with pytest.raises(ValueError, match="class probabilities need a Categorical or Bernoulli likelihood"):
        class_probabilities(target, z, np.zeros((2, 3), np.float32))
