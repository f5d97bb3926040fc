"""The condition language: what parses, into what, and where the errors point."""

from __future__ import annotations

import pytest

from sidecar.alerting.conditions import (
    And,
    Compare,
    ConditionError,
    Deviates,
    Equals,
    Not,
    Or,
    SignalRef,
    leaves,
    parse,
)
from sidecar.alerting.signals import FEATURE_SIGNALS, SCALAR_SIGNALS, TEXT_SIGNALS

PSI = SignalRef("psi")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("accuracy < 0.85", Compare(SignalRef("accuracy"), "<", 0.85)),
        ("psi > 0.2", Compare(PSI, ">", 0.2)),
        ("  psi>0.2  ", Compare(PSI, ">", 0.2)),
        ("error_rate >= 5e-1", Compare(SignalRef("error_rate"), ">=", 0.5)),
        ("mae <= 1E3", Compare(SignalRef("mae"), "<=", 1000.0)),
        ("volume == 0", Compare(SignalRef("volume"), "==", 0.0)),
        ("missing_periods != 0", Compare(SignalRef("missing_periods"), "!=", 0.0)),
        ("accuracy_drop > -0.1", Compare(SignalRef("accuracy_drop"), ">", -0.1)),
        ("freshness_seconds > +600", Compare(SignalRef("freshness_seconds"), ">", 600.0)),
        ("f1 < .5", Compare(SignalRef("f1"), "<", 0.5)),
        ("f1 < 5.", Compare(SignalRef("f1"), "<", 5.0)),
        ('psi{feature="age"} > 0.2', Compare(SignalRef("psi", "age"), ">", 0.2)),
        ("ks_pvalue{feature='zip code'} < 0.05", Compare(SignalRef("ks_pvalue", "zip code"), "<", 0.05)),
        ('chi2_pvalue{ feature = "a\\"b" } < 1e-3', Compare(SignalRef("chi2_pvalue", 'a"b'), "<", 0.001)),
        (
            "psi > 0.2 and accuracy_drop > 0.05",
            And((Compare(PSI, ">", 0.2), Compare(SignalRef("accuracy_drop"), ">", 0.05))),
        ),
        (
            "psi > 0.1 and psi <= 0.2",
            And((Compare(PSI, ">", 0.1), Compare(PSI, "<=", 0.2))),
        ),
        # "and" binds tighter than "or".
        (
            "mae > 1 or psi > 0.2 and rmse > 2",
            Or(
                (
                    Compare(SignalRef("mae"), ">", 1.0),
                    And((Compare(PSI, ">", 0.2), Compare(SignalRef("rmse"), ">", 2.0))),
                )
            ),
        ),
        (
            "(mae > 1 or psi > 0.2) and rmse > 2",
            And(
                (
                    Or((Compare(SignalRef("mae"), ">", 1.0), Compare(PSI, ">", 0.2))),
                    Compare(SignalRef("rmse"), ">", 2.0),
                )
            ),
        ),
        ("not accuracy > 0.9", Not(Compare(SignalRef("accuracy"), ">", 0.9))),
        ("not not psi > 1", Not(Not(Compare(PSI, ">", 1.0)))),
        ("deviates(p99_latency_seconds, 3)", Deviates(SignalRef("p99_latency_seconds"), 3.0)),
        ('deviates(psi{feature="age"}, 2.5)', Deviates(SignalRef("psi", "age"), 2.5)),
        # Nested groups of one connective are one flat group: the same meaning, the same tree.
        (
            "(psi > 1 or mae > 1) or (rmse > 1 or f1 < 1)",
            Or(
                (
                    Compare(PSI, ">", 1.0),
                    Compare(SignalRef("mae"), ">", 1.0),
                    Compare(SignalRef("rmse"), ">", 1.0),
                    Compare(SignalRef("f1"), "<", 1.0),
                )
            ),
        ),
        (
            "psi > 1 and (mae > 1 and rmse > 1)",
            And((Compare(PSI, ">", 1.0), Compare(SignalRef("mae"), ">", 1.0), Compare(SignalRef("rmse"), ">", 1.0))),
        ),
        (
            "deviates(volume, 4) or volume == 0",
            Or((Deviates(SignalRef("volume"), 4.0), Compare(SignalRef("volume"), "==", 0.0))),
        ),
    ],
)
def test_good_conditions(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("psi >> 0.2", "unexpected '>'", 5),
        ("", "unexpected end of condition", 0),
        ("psi", "unexpected end of condition", 3),
        ("psi > ", "unexpected end of condition", 6),
        ("psi > 0.2 and", "unexpected end of condition", 13),
        ("psi > 0.2 or or mae > 1", "unexpected 'or'", 13),
        ("(psi > 0.2", "unexpected end of condition", 10),
        ("psi > 0.2)", "unexpected ')'", 9),
        ("acuracy < 0.85", "unknown signal 'acuracy'", 0),
        ("psi > 0.2 and drift > 1", "unknown signal 'drift'", 14),
        ("0.85 > accuracy", "unexpected '0.85'", 0),
        ("accuracy = 0.85", "unexpected '='", 9),
        ("accuracy ! 0.85", "unexpected '!'", 9),
        ("accuracy < high", "unexpected 'high'", 11),
        ("accuracy < 0.85 mae > 1", "unexpected 'mae'", 16),
        ("psi > 0.2 - 0.1", "unexpected '-'", 10),
        ("psi > 1e999", "number 1e999 out of range", 6),
        ("psi > 0.2 $", "unexpected '$'", 10),
        # The first problem from the left wins, whichever stage finds it.
        ("nope $ 1", "unknown signal 'nope'", 0),
        ('accuracy{feature="age"} < 0.8', "unexpected selector on 'accuracy'", 8),
        ('psi{model="x"} > 0.2', "unknown selector key 'model'", 4),
        ("psi{feature=age} > 0.2", "unexpected 'age'", 12),
        ('psi{feature="age" > 0.2', "unexpected '>'", 18),
        ('psi{feature="age} > 0.2', "unterminated string", 12),
        ("deviates(psi 3)", "unexpected '3'", 13),
        ("deviates(psi, 0)", "number of standard deviations 0 is not positive", 14),
        ("deviates(psi, -2)", "number of standard deviations -2 is not positive", 14),
        ("deviates(psi, 3) > 1", "unexpected '>'", 17),
        ("deviates(nope, 3)", "unknown signal 'nope'", 9),
        ("not", "unexpected end of condition", 3),
        ("and psi > 1", "unexpected 'and'", 0),
    ],
)
def test_bad_conditions(text: str, message: str, position: int) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(text)
    assert caught.value.message == message
    assert caught.value.position == position
    assert str(caught.value).startswith(f"{message} at position {position}")


def test_error_hints() -> None:
    def error(text: str) -> str:
        with pytest.raises(ConditionError) as caught:
            parse(text)
        return str(caught.value)

    assert error("psi >> 0.2") == "unexpected '>' at position 5; expected a number"
    assert error("acuracy < 0.85").endswith("did you mean 'accuracy'?")
    assert error("accuracy = 0.85").endswith("use '==' to test equality")
    assert error("0.85 > accuracy").endswith("put the signal first, e.g. accuracy < 0.85")
    assert error("accuracy < 0.85 mae > 1").endswith("use 'and' or 'or' to combine conditions")
    assert error('accuracy{feature="age"} < 0.8').endswith("only psi, ks_pvalue, chi2_pvalue have per-feature values")


@pytest.mark.parametrize(
    "text",
    [
        "psi > 0.2",
        "accuracy_drop > -0.1",
        'psi{feature="a\\"b"} >= 0.001',
        "mae > 1 or psi > 0.2 and rmse > 2",
        "(mae > 1 or psi > 0.2) and rmse > 2",
        "not (psi > 1 and mae > 2)",
        "not not psi > 1",
        "deviates(psi, 2.5) and not deviates(volume, 3)",
    ],
)
def test_str_round_trips(text: str) -> None:
    # The canonical text shown in alerts parses back into the same tree.
    assert parse(str(parse(text))) == parse(text)
    assert str(parse(text)) == text


def test_every_signal_parses_and_selectors_only_on_feature_signals() -> None:
    for name in SCALAR_SIGNALS:
        assert parse(f"{name} > 1") == Compare(SignalRef(name), ">", 1.0)
        with pytest.raises(ConditionError, match="unexpected selector"):
            parse(f'{name}{{feature="x"}} > 1')
    for name in FEATURE_SIGNALS:
        assert parse(f'{name}{{feature="x"}} > 1') == Compare(SignalRef(name, "x"), ">", 1.0)


def test_leaves_in_order() -> None:
    condition = parse("psi > 0.2 and not (mae > 1 or deviates(volume, 3))")
    assert [str(leaf) for leaf in leaves(condition)] == ["psi > 0.2", "mae > 1", "deviates(volume, 3)"]


# --- word signals: experiment_decision -------------------------------------------------------------

DECISION = SignalRef("experiment_decision")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ('experiment_decision == "revert"', Equals(DECISION, "==", "revert")),
        ("experiment_decision != 'roll_out'", Equals(DECISION, "!=", "roll_out")),
        (
            'experiment_decision == "revert" or error_rate > 0.1',
            Or((Equals(DECISION, "==", "revert"), Compare(SignalRef("error_rate"), ">", 0.1))),
        ),
        ('not experiment_decision == "invalid"', Not(Equals(DECISION, "==", "invalid"))),
    ],
)
def test_a_word_signal_is_tested_for_equality_with_a_quoted_word(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    ("text", "message", "position", "hint"),
    [
        ("experiment_decision == revert", "unexpected 'revert'", 23, 'expected one of "invalid", "revert"'),
        ("experiment_decision == 1", "unexpected '1'", 23, 'expected one of "invalid", "revert"'),
        ('experiment_decision > "revert"', "unexpected '>'", 20, "is a word: test it with == or !="),
        ('experiment_decision = "revert"', "unexpected '='", 20, "is a word: test it with == or !="),
        ('experiment_decision == "revrt"', 'unknown experiment_decision "revrt"', 23, 'did you mean "revert"?'),
        ('experiment_decision == "ship_it"', 'unknown experiment_decision "ship_it"', 23, "expected one of"),
        (
            "deviates(experiment_decision, 3)",
            "deviates() needs a number signal, and experiment_decision is a word",
            9,
            "",
        ),
        ('experiment_decision{feature="x"} == "revert"', "unexpected selector on 'experiment_decision'", 19, ""),
        ('error_rate == "revert"', 'unexpected string "revert"', 14, "expected a number"),
    ],
)
def test_a_word_signal_refuses_what_is_not_one_of_its_words(text: str, message: str, position: int, hint: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(text)
    assert (caught.value.message, caught.value.position) == (message, position)
    assert hint in caught.value.hint


@pytest.mark.parametrize(
    "text",
    ['experiment_decision == "revert"', 'experiment_decision != "roll_out" and not (psi > 0.2 or mae > 1)'],
)
def test_a_word_comparison_round_trips(text: str) -> None:
    assert str(parse(text)) == text
    assert parse(str(parse(text))) == parse(text)


def test_every_word_of_every_word_signal_parses() -> None:
    for name, words in TEXT_SIGNALS.items():
        for word in words:
            assert parse(f'{name} == "{word}"') == Equals(SignalRef(name), "==", word)
    assert [str(leaf) for leaf in leaves(parse('experiment_decision == "revert" and psi > 1'))] == [
        'experiment_decision == "revert"',
        "psi > 1",
    ]
