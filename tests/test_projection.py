import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gradopt import project_argmax, project_nearest


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000))
def test_argmax_projecting_twice_is_once(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    allowed = torch.ones(7, dtype=torch.bool)
    allowed[0] = False
    once = project_argmax(x, allowed)
    assert (once != 0).all()
    assert torch.equal(project_argmax(F.one_hot(once, 7).double(), allowed), once)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000))
def test_nearest_embedding_projecting_twice_is_once(seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(11, 4, generator=g, dtype=torch.float64)
    e = torch.randn(2, 6, 4, generator=g, dtype=torch.float64) * 2
    once = project_nearest(e, emb)
    assert torch.equal(project_nearest(emb[once], emb), once)


def test_exact_token_embedding_projects_to_itself():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(50, 8, generator=g, dtype=torch.float64)
    ids = torch.arange(50)
    assert torch.equal(project_nearest(emb[ids], emb), ids)


def test_nearest_respects_allowed_and_matches_cdist():
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(9, 3, generator=g, dtype=torch.float64)
    e = torch.randn(4, 3, generator=g, dtype=torch.float64)
    assert torch.equal(project_nearest(e, emb), torch.cdist(e, emb).argmin(-1))
    allowed = torch.ones(9, dtype=torch.bool)
    allowed[project_nearest(e, emb)] = False
    assert not allowed[project_nearest(e, emb, allowed)].logical_not().any()


def test_width_mismatch_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="width"):
        project_nearest(torch.zeros(2, 3), torch.zeros(5, 4))
