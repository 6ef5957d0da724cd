"""ID quality metrics against reference values (scikit-learn 1.x's adjusted/normalized_mutual_info_score)."""
import numpy as np
import pytest

from lmindexer.eval.metrics import ami, code_usage, nmi


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
