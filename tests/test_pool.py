"""domains.ProcessPool: the parallel map gives the serial results, in order, and counts its CPU."""

import pytest

import domains
from domains import ProcessPool
from rewardmodels import checked_utility

TUNES = [f"X:{k}\nT:t{k}\nM:4/4\nL:1/8\nK:G\n{body}|\n" for k, body in enumerate(
    ["GABc dedB|dedB dedB", "G2B2 d4|c2A2 F4", "GABc dedB|dedB dedB dede", "K:Zz", "gfed cBAG|FGAB c4",
     "G,^c'_Bf C^G,e'_E|^d,b_Ac' F,^g_e'C", "A2 B2 c2 d2|e8", "GGGG GGGG|GGGG GGGG"], 1)]


def test_parallel_map_equals_serial_in_order():
    jobs = [(t, None) for t in TUNES]
    serial = [checked_utility(j) for j in jobs]
    assert any(v.ok for v, _ in serial) and not all(v.ok for v, _ in serial)  # both kinds of tune
    with ProcessPool(2) as pool:
        assert pool.map(checked_utility, jobs) == serial
        assert pool.cpu_seconds > 0  # the workers' own CPU time, which this process does not see
        verdicts = pool.map(domains.validate_abc, TUNES, desc="validate")
        assert verdicts == [v for v, _ in serial]
        wait = pool.submit(checked_utility, jobs[:3], one_worker=True)
        assert wait() == serial[:3] and wait() == serial[:3]  # collected once, returned again
        assert pool.map(domains.validate_abc, []) == []
    with ProcessPool(1) as alone:
        assert alone.map(checked_utility, jobs) == serial and alone._executor is None  # no workers at all


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_bad_process_count(bad):
    with pytest.raises(ValueError, match="processes must be an int >= 1"):
        ProcessPool(bad)
