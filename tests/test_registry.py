"""The domain a generator directory resolves to (`domains.resolve_domain_name`): the one rule the
command line (`generator_domain`) and the corpus job (`job_domain`) share."""

import pytest

import domains


def test_no_record_and_no_name_is_abc(tmp_path):
    assert domains.resolve_domain_name(tmp_path) == "abc"
    assert domains.resolve_domain_name(tmp_path, "text") == "text"  # nothing recorded: the name stands


def test_the_recorded_domain_is_used_and_an_agreeing_name_accepted(tmp_path):
    domains.save_domain_name(tmp_path, "midi")
    assert domains.resolve_domain_name(tmp_path) == "midi"
    assert domains.resolve_domain_name(tmp_path, "midi") == "midi"


def test_a_name_contradicting_the_record_is_refused_naming_both(tmp_path):
    domains.save_domain_name(tmp_path, "text")
    with pytest.raises(ValueError, match=r"domain 'abc'.*trained on text pieces.*domain\.json.*choose 'text'"):
        domains.resolve_domain_name(tmp_path, "abc")
