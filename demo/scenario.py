"""The demo's story in two phases: calm traffic like the training data, then a shift the sidecar should catch.

In the shift a new broker starts sending applications: incomes are lower
(``income`` moves down one standard deviation), far more applicants are
unemployed (the categorical ``employment`` rebalances), and the broker's
form sends ``age`` as 0 when the field was left empty (a quality violation:
0 is far below the youngest applicant in the training data).

Every length here is divided by the demo's speed (``DEMO_SPEED``), so a test
can tell the same story in a fraction of the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from demo.model_server import EMPLOYMENT, EMPLOYMENT_SHARES

__all__ = ["CALM", "SHIFT", "Mix", "Scenario"]


@dataclass(frozen=True)
class Mix:
    """What the traffic looks like: a shift of the income mean, the employment shares, the rows sent with age 0.

    Usage::

        rows = sample_features(rng, 4, income_shift=mix.income_shift, employment_shares=mix.employment_shares)
    """

    income_shift: float  # standard deviations of the training income
    employment_shares: tuple[float, ...]  # in ``EMPLOYMENT`` order
    age_zero_share: float  # share of rows whose age arrives as 0


CALM = Mix(income_shift=0.0, employment_shares=EMPLOYMENT_SHARES, age_zero_share=0.0)
# Each part alone is enough for its signal: a one-sd income move has a PSI near 1,
# the employment mix about 0.4, and 12% of rows out of range is past the demo
# rules' 0.05 violations per record even in a one-second slice of traffic.
SHIFT = Mix(income_shift=-1.0, employment_shares=(0.40, 0.25, 0.10, 0.25), age_zero_share=0.12)


@dataclass(frozen=True)
class Scenario:
    """Calm for ``calm_seconds``, then shifted until the demo stops.

    Usage::

        scenario = Scenario.at_speed(2.0)  # calm for 15 s
        scenario.mix(elapsed=20.0) is SHIFT  # True
    """

    calm_seconds: float = 30.0
    calm: Mix = CALM
    shift: Mix = SHIFT

    @classmethod
    def at_speed(cls, speed: float) -> Scenario:
        return cls(calm_seconds=cls.calm_seconds / speed)

    def phase(self, elapsed: float) -> str:
        return "calm" if elapsed < self.calm_seconds else "shifted"

    def mix(self, elapsed: float) -> Mix:
        return self.calm if elapsed < self.calm_seconds else self.shift

    def describe(self) -> str:
        """The story in three lines, for the banner."""
        unemployed = EMPLOYMENT.index("unemployed")
        before, after = self.calm.employment_shares[unemployed], self.shift.employment_shares[unemployed]
        return (
            f"Like the training data for {self.calm_seconds:g} s, then a new broker sends them:\n"
            f"income falls {-self.shift.income_shift:g} standard deviation, unemployed applicants rise from "
            f"{before:.0%} to {after:.0%},\nand the broker's form sends age 0 in {self.shift.age_zero_share:.0%} "
            "of the rows."
        )
