import torch

from gradopt import EditProblem, PolishConfig, polish, propose_swaps, ranked_candidates, sample_candidates


def _toy(seed=0, b=3, t=6, v=5):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(b, t, v, generator=g, dtype=torch.float64)  # J(x) = sum_i w[row, i, x_i]
    ids = torch.randint(v, (b, t), generator=g)
    return w, ids


def test_propose_swaps_ranks_by_first_order_gain_and_skips_frozen_and_current():
    w, ids = _toy()
    free = torch.ones_like(ids, dtype=torch.bool)
    allowed = torch.ones(5, dtype=torch.bool)
    allowed[0] = False
    top = propose_swaps(w, ids, free, allowed, 2)
    gain = w - w.gather(-1, ids[..., None])
    assert not (top == ids[..., None]).any() and not (top == 0).any()
    picked = gain.gather(-1, top)
    assert (picked[..., 0] >= picked[..., 1]).all()


def test_polish_improves_exactly_and_keeps_frozen_positions():
    w, ids = _toy()
    b, t, v = w.shape
    allowed = torch.ones(v, dtype=torch.bool)
    free = torch.ones(b, t, dtype=torch.bool)
    free[:, :2] = False

    def score(cand, rows):
        return w[rows].gather(-1, cand[..., None])[..., 0].sum(-1)

    start = ids.clone()
    value = score(ids, torch.arange(b))
    gens = [torch.Generator().manual_seed(i) for i in range(b)]
    new, new_value, evals = polish(EditProblem(ids.clone(), value.clone(), free, allowed, lambda x: w, score, None),
                                   PolishConfig(rounds=20, top_k=2, candidates=4, combine=1), gens)
    assert evals == 20 * b * 4
    assert torch.allclose(new_value, score(new, torch.arange(b)))
    assert (new_value > value).all()
    assert torch.equal(new[:, :2], start[:, :2])


def test_nonfinite_rows_are_left_alone_and_veto_is_respected():
    w, ids = _toy(1)
    b, t, v = w.shape
    free = torch.ones(b, t, dtype=torch.bool)
    value = torch.tensor([float("nan"), 0.0, 0.0], dtype=torch.float64)
    gens = [torch.Generator().manual_seed(i) for i in range(b)]

    def score(cand, rows):
        return w[rows].gather(-1, cand[..., None])[..., 0].sum(-1) + 100.0

    veto = lambda cand, rows: torch.tensor([int(rows[0]) != 2] * len(rows))  # noqa: E731
    new, val, _ = polish(EditProblem(ids.clone(), value.clone(), free, torch.ones(v, dtype=torch.bool), lambda x: w,
                                     score, veto), PolishConfig(rounds=2, top_k=2, candidates=3), gens)
    assert torch.equal(new[0], ids[0]) and torch.isnan(val[0])
    assert not torch.equal(new[1], ids[1])
    assert torch.equal(new[2], ids[2])


def test_sample_candidates_changes_one_free_position():
    w, ids = _toy(2)
    free = torch.zeros_like(ids, dtype=torch.bool)
    free[:, 3] = True
    props = propose_swaps(w, ids, free, torch.ones(5, dtype=torch.bool), 3)
    cands = sample_candidates(ids, free, props, 7, [torch.Generator().manual_seed(0) for _ in range(3)])
    diff = cands != ids[:, None, :]
    assert diff.sum(-1).le(1).all() and not diff[..., [0, 1, 2, 4, 5]].any()


def test_per_position_allowed_sets_smaller_than_top_k_never_propose_a_disallowed_token():
    w, ids = _toy(3, b=2, t=4, v=6)
    allowed = torch.zeros(2, 4, 6, dtype=torch.bool)
    allowed[..., :] = torch.nn.functional.one_hot(ids, 6).bool()  # every position allows its own token
    allowed[0, 1, [(int(ids[0, 1]) + 1) % 6]] = True  # one alternative
    allowed[1, 2, [(int(ids[1, 2]) + k) % 6 for k in (1, 2, 3)]] = True  # three alternatives
    allowed[0, 3] = True  # five alternatives
    free = torch.ones(2, 4, dtype=torch.bool)
    top = propose_swaps(w, ids, free, allowed, 4)
    assert top.shape == (2, 4, 4)
    assert allowed.gather(-1, top).all()
    assert (top[0, 1] == (ids[0, 1] + 1) % 6).all()  # the only alternative, repeated
    assert set(top[1, 2].tolist()) == {(int(ids[1, 2]) + k) % 6 for k in (1, 2, 3)}
    assert len(set(top[0, 3].tolist())) == 4 and not (top[0, 3] == ids[0, 3]).any()
    assert (top[0, 0] == ids[0, 0]).all()  # no alternative: a no-op proposal
    cands = sample_candidates(ids, free, top, 9, [torch.Generator().manual_seed(i) for i in range(2)])
    assert allowed[torch.arange(2)[:, None, None], torch.arange(4), cands].all()


def test_combining_improving_swaps_makes_several_verified_edits_per_round():
    w, ids = _toy(2, b=4, t=12, v=6)
    b, t, v = w.shape
    allowed = torch.ones(v, dtype=torch.bool)
    free = torch.ones(b, t, dtype=torch.bool)

    def score(cand, rows):
        return w[rows].gather(-1, cand[..., None])[..., 0].sum(-1)

    value = score(ids, torch.arange(b))
    out = {}
    for combine in (1, 4):
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        new, new_value, evals = polish(EditProblem(ids.clone(), value.clone(), free, allowed, lambda x: w, score, None),
                                       PolishConfig(rounds=1, top_k=3, candidates=8, combine=combine), gens)
        assert torch.allclose(new_value, score(new, torch.arange(b)))  # still exact
        out[combine] = (new, new_value, evals)
    changed = (out[4][0] != ids).sum(-1)
    assert int(changed.max()) > 1 and int((out[1][0] != ids).sum(-1).max()) == 1
    assert (out[4][1] >= out[1][1]).all() and (out[4][1] > out[1][1]).any()  # additive J: merging helps
    assert out[1][2] == b * 8 and b * 8 < out[4][2] <= b * 9  # one merged sequence per row at most


def test_polish_leaves_the_problem_it_was_given_unchanged():
    w, ids = _toy(4)
    b, t, v = w.shape

    def score(cand, rows):
        return w[rows].gather(-1, cand[..., None])[..., 0].sum(-1)

    value = score(ids, torch.arange(b))
    problem = EditProblem(ids.clone(), value.clone(), torch.ones(b, t, dtype=torch.bool),
                          torch.ones(v, dtype=torch.bool), lambda x: w, score)
    gens = [torch.Generator().manual_seed(i) for i in range(b)]
    new, new_value, _ = polish(problem, PolishConfig(rounds=3, top_k=2, candidates=4), gens)
    assert (new_value > value).all()  # it did edit ...
    assert torch.equal(problem.ids, ids) and torch.equal(problem.value, value)  # ... copies, not the inputs


def test_ranked_candidates_are_the_best_untried_swaps_of_the_whole_row_in_order():
    w, ids = _toy(5, b=2, t=7, v=6)
    b, t, v = w.shape
    free = torch.ones(b, t, dtype=torch.bool)
    free[:, 0] = False
    allowed = torch.ones(v, dtype=torch.bool)
    allowed[5] = False
    tried = torch.zeros(b, t, v, dtype=torch.bool)
    tried[0, 3, :] = True  # row 0 already scored every swap at position 3
    cands = ranked_candidates(w, ids, free, allowed, tried, 5)
    gain = w - w.gather(-1, ids[..., None])
    for r in range(b):
        legal = [(float(gain[r, i, u]), i, u) for i in range(1, t) for u in range(5)
                 if u != int(ids[r, i]) and not tried[r, i, u]]
        want = [(i, u) for _, i, u in sorted(legal, reverse=True)[:5]]
        got = []
        for c in cands[r]:
            (pos,) = (c != ids[r]).nonzero()[:, 0].tolist()
            got.append((pos, int(c[pos])))
        assert got == want


def test_ranked_pick_takes_the_best_single_swap_in_one_round():
    w, ids = _toy(6, b=4, t=30, v=6)
    b, t, v = w.shape

    def score(cand, rows):
        return w[rows].gather(-1, cand[..., None])[..., 0].sum(-1)

    value = score(ids, torch.arange(b))
    best = (w.amax(-1) - w.gather(-1, ids[..., None])[..., 0]).amax(-1)  # the best single swap's gain per row
    new = {}
    for pick in ("ranked", "uniform"):
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        problem = EditProblem(ids.clone(), value.clone(), torch.ones(b, t, dtype=torch.bool),
                              torch.ones(v, dtype=torch.bool), lambda x: w, score)
        new[pick] = polish(problem, PolishConfig(rounds=1, top_k=2, candidates=4, combine=1, pick=pick), gens)[1]
    assert torch.allclose(new["ranked"] - value, best)  # additive J: the first-order ranking is exact
    assert (new["uniform"] - value < best - 1e-9).any()  # 4 random positions of 30 mostly miss it


def test_a_row_that_did_not_move_tries_its_next_best_swaps():
    w, ids = _toy(7, b=1, t=8, v=4)
    b, t, v = w.shape
    est = w.clone()  # the estimate ranks swaps by w ...
    bad = (w - w.gather(-1, ids[..., None])).flatten().topk(3).indices  # ... but its 3 best are bad exactly
    truth = w.clone().flatten()
    truth[bad] = -100.0
    truth = truth.reshape(w.shape)

    def score(cand, rows):
        return truth[rows].gather(-1, cand[..., None])[..., 0].sum(-1)

    value = score(ids, torch.arange(b))
    problem = EditProblem(ids.clone(), value.clone(), torch.ones(b, t, dtype=torch.bool),
                          torch.ones(v, dtype=torch.bool), lambda x: est, score)
    new, new_value, evals = polish(problem, PolishConfig(rounds=2, candidates=3, combine=1, pick="ranked"),
                                   [torch.Generator().manual_seed(0)])
    assert evals == 2 * 3
    assert (new_value > value).all()  # round 2 scored the next three, not the same three again


def test_backoff_halves_a_merge_that_fails_together_until_it_wins():
    w, ids = _toy(5, b=3, t=12, v=6)
    b, t, v = w.shape
    start = ids.clone()

    def score(cand, rows):  # additive, but more than two changes at once are punished
        over = ((cand != start[rows]).sum(-1) - 2).clamp(min=0)
        return w[rows].gather(-1, cand[..., None])[..., 0].sum(-1) - 100.0 * over

    value = score(ids, torch.arange(b))
    free, allowed = torch.ones(b, t, dtype=torch.bool), torch.ones(v, dtype=torch.bool)
    out = {}
    for backoff in (False, True):
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        cfg = PolishConfig(rounds=1, candidates=8, combine=8, backoff=backoff)
        out[backoff] = polish(EditProblem(ids.clone(), value.clone(), free, allowed, lambda x: w, score, None), cfg,
                              gens)
        assert torch.allclose(out[backoff][1], score(out[backoff][0], torch.arange(b)))  # still exact
    plain, halved = out[False], out[True]
    assert ((plain[0] != ids).sum(-1) == 1).all()  # the whole merge lost: one swap per row
    assert ((halved[0] != ids).sum(-1) == 2).all()  # halved down to the two best swaps, which win
    assert (halved[1] > plain[1]).all()
    # each row re-scored its merge at 8 (or fewer) -> 4 -> 2 swaps: at most two more sequences per row
    assert plain[2] < halved[2] <= plain[2] + 2 * b
