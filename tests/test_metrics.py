"""ID quality metrics against reference values (scikit-learn 1.x's adjusted/normalized_mutual_info_score)."""

import math

import numpy as np
import pytest

from lmindexer.eval.metrics import _contingency, _expected_mutual_info, ami, code_usage, nmi


def test_ami_nmi_reference_values():
    a = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    b = [0, 0, 1, 1, 1, 2, 2, 2, 0, 0]
    assert ami(a, b) == pytest.approx(0.17152423540072848, abs=1e-6)
    assert nmi(a, b) == pytest.approx(0.3946483716358942, abs=1e-6)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 3000)
    y = (x * 7 + rng.integers(0, 3, 3000)) % 40
    assert ami(x, y) == pytest.approx(0.7640657479772843, abs=1e-6)
    assert nmi(x, y) == pytest.approx(0.7655055461024516, abs=1e-6)


def test_ami_edge_cases():
    assert ami(["a", "a", "b", "b"], [5, 5, 9, 9]) == pytest.approx(1.0)
    assert ami([0, 0, 0, 0], [0, 1, 2, 3]) == pytest.approx(0.0)
    rng = np.random.default_rng(1)
    assert abs(ami(rng.integers(0, 4, 2000), rng.integers(0, 8, 2000))) < 0.01


def test_code_usage_and_perplexity():
    u = code_usage(np.array([0, 0, 1, 1]), 4)
    assert u == {"used": 2, "usage": 0.5, "perplexity": pytest.approx(2.0)}
    assert code_usage(np.arange(8) % 4, 4)["perplexity"] == pytest.approx(4.0)


def _brute_emi(ra, rb, n):
    """E[MI] by the textbook triple sum, in Python floats."""
    lg, total = math.lgamma, 0.0
    for a in ra:
        for b in rb:
            for k in range(max(1, a + b - n), min(a, b) + 1):
                log_p = (
                    lg(a + 1)
                    + lg(b + 1)
                    + lg(n - a + 1)
                    + lg(n - b + 1)
                    - lg(n + 1)
                    - lg(k + 1)
                    - lg(a - k + 1)
                    - lg(b - k + 1)
                    - lg(n - a - b + k + 1)
                )
                total += k / n * math.log(n * k / (a * b)) * math.exp(log_p)
    return total


def test_expected_mutual_info_is_exact_for_many_small_clusters():
    """The regime of full-ID prefixes: thousands of tiny clusters, where float32 rounding used to bias AMI."""
    rng = np.random.default_rng(2)
    labels, codes = rng.integers(0, 12, 6000), rng.integers(0, 2500, 6000)
    _, ra, rb = _contingency(labels, codes)
    assert _expected_mutual_info(ra, rb, 6000) == pytest.approx(_brute_emi(ra.tolist(), rb.tolist(), 6000), rel=1e-9)
    assert abs(ami(labels, codes)) < 2e-3
