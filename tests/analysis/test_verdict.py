"""The verdict: which pick is recommended and why, the picks reconciled, plain limits, ε with δ."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.verdict import ASR_LIMIT, most_vulnerable, verdict_info


def frame(clean: dict, asr, rates=(0.1,), sizes=(1, 3), seed_shift=(-0.01, 0.0, 0.01), **extra):
    """Rows per (C, trigger_size, poison_rate, seed); ``asr(C, size, rate)`` when poisoned."""
    rows = []
    for C, size, rate, (s, shift) in itertools.product(
        clean, sizes, (0.0, *rates), enumerate(seed_shift)
    ):
        rows.append(
            {
                "learner": "svm_linear",
                "C": C,
                "trigger_size": size,
                "poison_rate": rate,
                "seed": s,
                "status": "ok",
                "n_poison": int(rate * 100),
                "clean_acc": clean[C] + shift,
                "asr": (asr(C, size, rate) if rate > 0 else 0.01) + shift,
                **extra,
            }
        )
    return pd.DataFrame(rows)


CLEAN = {0.01: 0.50, 1.0: 0.95, 10.0: 0.955, 100.0: 0.95}


def split_asr(C, size, rate):
    """C=1: mean 0.40 but worst 0.70; C=10: 0.45 everywhere; C=100 bad; C=0.01 chance-level."""
    return {0.01: 0.99, 1.0: (0.10, 0.70)[size == 3], 10.0: 0.45, 100.0: 0.80}[C]


def test_worst_case_pick_is_recommended_when_the_mean_pick_is_clearly_worse_at_worst():
    v = verdict_info(frame(CLEAN, split_asr), clean_tolerance=0.01)
    assert v.picks["asr"].choice == {"C": 1.0} and v.picks["worst_asr"].choice == {"C": 10.0}
    assert v.basis == "worst_asr" and v.recommended.choice == {"C": 10.0}
    assert v.recommended.values["worst_asr"]["mean"] == pytest.approx(0.45)
    assert v.recommended.values["asr"]["mean"] == pytest.approx(0.45)
    assert "lowest worst-case ASR (0.450)" in v.why and "C=1 (0.400)" in v.why
    assert "The criteria differ: lowest mean ASR picks C=1" in v.agreement
    assert v.n_accurate == 3 and v.n_configurations == 4
    assert v.headline.startswith("use C=10: clean accuracy 0.955")


def test_mean_pick_is_kept_when_the_seeds_cannot_separate_the_worst_cases():
    v = verdict_info(frame(CLEAN, split_asr, seed_shift=(-0.3, 0.0, 0.3)), clean_tolerance=0.01)
    assert v.basis == "asr" and v.recommended.choice == {"C": 1.0}
    assert "within the seeds' 95% interval of the lowest worst case" in v.why


def test_agreeing_picks_are_said_to_agree():
    v = verdict_info(frame(CLEAN, lambda C, s, r: {0.01: 0.9, 1.0: 0.2, 10.0: 0.3, 100.0: 0.4}[C]))
    assert v.basis == "asr" and v.recommended.choice == {"C": 1.0}
    assert v.agreement.startswith("The 2 criteria agree: lowest mean ASR and lowest worst-case ASR")
    assert "lowest worst-case ASR of the accurate configurations" in v.why


def rate_asr(C, size, rate):
    """Every accurate configuration is backdoored from rate 0.1 on; the useless one never is."""
    if C == 0.01:
        return 0.05
    return {0.05: 0.2, 0.1: 0.6, 0.2: 0.9}[rate] + 0.01 * np.log10(C)


def test_a_plain_statement_when_no_accurate_configuration_resists():
    v = verdict_info(frame(CLEAN, rate_asr, rates=(0.05, 0.1, 0.2)))
    assert v.attack_axis == "poison_rate"
    assert [r["value"] for r in v.by_attack] == [0.05, 0.1, 0.2]  # rate 0 has no poison
    assert [r["n_below"] for r in v.by_attack] == [3, 0, 0]
    assert v.limits[0].startswith(
        f"From poison_rate 0.1 on, no accurate configuration keeps ASR below {ASR_LIMIT:g}"
    )
    # the chance-level C=0.01 has the lowest ASR but is not counted: it is useless, not robust
    assert "C=0.01" not in " ".join(v.limits)
    assert any("Even the recommended configuration is backdoored" in line for line in v.limits)


def test_a_single_failing_value_is_named_and_success_is_said_too():
    def only_top(C, size, rate):
        return 0.9 if rate == 0.2 else 0.1

    v = verdict_info(frame(CLEAN, only_top, rates=(0.05, 0.1, 0.2)))
    assert v.limits[0].startswith(
        "No accurate configuration keeps ASR below 0.5 at poison_rate 0.2"
    )
    ok = verdict_info(frame(CLEAN, lambda C, s, r: 0.1, rates=(0.05, 0.1)))
    assert ok.limits[0].startswith("Some accurate configuration keeps ASR below 0.5 at every")


def test_most_vulnerable_is_chosen_among_accurate_configurations():
    v = verdict_info(frame(CLEAN, split_asr))
    worst = most_vulnerable(v.selections["asr"])
    assert worst == {"C": 100.0}  # not the chance-level C=0.01 with ASR 0.99


def test_dp_sweeps_carry_epsilon_at_delta():
    rows = []
    for noise, rate, seed in itertools.product((0.0, 0.5, 1.0), (0.0, 0.1), (0, 1)):
        rows.append(
            {
                "learner": "cnn",
                "defence": "dp_sgd",
                "dp_delta": 1e-5,
                "dp_noise": noise,
                "poison_rate": rate,
                "seed": seed,
                "status": "ok",
                "n_poison": int(rate * 100),
                "clean_acc": 0.99 - 0.001 * noise,
                "asr": (0.9 - 0.5 * noise) if rate else 0.01,
                "dp_epsilon": np.nan if noise == 0 else 8.0 / noise + seed,
            }
        )
    v = verdict_info(pd.DataFrame(rows))
    assert v.recommended.choice == {"dp_noise": 1.0}
    assert v.epsilon["delta"] == 1e-5 and v.epsilon["mean"] == pytest.approx(8.5)
    assert "ε = 8.50 at δ = 1e-05" in v.headline
    assert v.privacy.startswith("The recommended configuration is also the most private")
    no_noise = verdict_info(pd.DataFrame(rows), clean_tolerance=0.0)
    assert no_noise.recommended.choice == {"dp_noise": 0.0}
    assert no_noise.epsilon["mean"] is None and "ε = ∞" in no_noise.headline
    # only the noiseless configuration is accurate at tolerance 0: nothing private to offer
    assert no_noise.privacy.startswith("No accurate configuration has a finite ε")
    loose = verdict_info(pd.DataFrame(rows).assign(asr=lambda d: d["asr"] * 0 + 0.3))
    assert loose.recommended.choice == {"dp_noise": 0.0}  # ties: the higher clean accuracy
    assert loose.privacy.startswith("The most private accurate configuration, dp_noise=1 (ε = 8.50")
