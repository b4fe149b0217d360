import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradopt import project_entropy, project_simplex, tsallis2_entropy

vectors = st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=12)


@settings(max_examples=60, deadline=None)
@given(vectors)
def test_projection_lands_on_simplex_and_is_idempotent(xs):
    x = torch.tensor(xs, dtype=torch.float64)
    p = project_simplex(x)
    assert (p >= 0).all() and abs(float(p.sum()) - 1) < 1e-9
    assert torch.allclose(project_simplex(p), p, atol=1e-12)


def test_projection_matches_scipy_reference():
    from scipy.optimize import minimize

    x = torch.tensor([0.3, -0.2, 1.1, 0.4], dtype=torch.float64)
    p = project_simplex(x).numpy()
    res = minimize(lambda q: ((q - x.numpy()) ** 2).sum(), x0=[0.25] * 4, bounds=[(0, 1)] * 4,
                   constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1}], tol=1e-12)
    assert abs(res.x - p).max() < 1e-5


def test_disallowed_tokens_stay_zero():
    x = torch.tensor([[3.0, 0.1, 0.2, 0.3]], dtype=torch.float64)
    allowed = torch.tensor([False, True, True, True])
    p = project_simplex(x, allowed)
    assert p[0, 0] == 0 and abs(float(p.sum()) - 1) < 1e-12


@settings(max_examples=40, deadline=None)
@given(vectors, st.floats(0.0, 0.9))
def test_entropy_projection_meets_cap(xs, h):
    p = project_simplex(torch.tensor(xs, dtype=torch.float64))
    q = project_entropy(p, h)
    assert (q >= 0).all() and abs(float(q.sum()) - 1) < 1e-9
    assert float(tsallis2_entropy(q)) <= h + 1e-9


def test_point_inside_feasible_set_is_unchanged():
    p = torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64)
    assert torch.equal(project_entropy(p, 0.5), p)
    vertex = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.equal(project_entropy(vertex, 0.0), vertex)
