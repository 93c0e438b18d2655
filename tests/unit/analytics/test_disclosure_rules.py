"""Each disclosure rule fires where it should, and the policy can only be tightened."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.analytics import disclosure as sdc
from d4h.analytics.disclosure import Action, DisclosurePolicy, DisclosureRefused, Rule
from d4h.errors import ConfigError, PolicyDenied


def _rules(actions: tuple[sdc.DisclosureAction, ...]) -> set[Rule]:
    return {a.rule for a in actions}


class TestPolicy:
    def test_defaults_match_reference_when_created_without_arguments(self) -> None:
        p = DisclosurePolicy()
        assert (p.min_cell_count, p.rounding_base, p.zeros_are_disclosive) == (10, 5, True)
        assert (p.min_subset_size, p.min_complement_size, p.glm_max_params_ratio, p.min_residual_dof) == (
            10,
            10,
            0.33,
            10,
        )
        assert (p.dominance_n, p.dominance_k, p.min_at_risk, p.min_holders) == (2, 0.9, 10, 3)

    def test_tighten_returns_stricter_policy_when_thresholds_raised(self) -> None:
        p = DisclosurePolicy().tighten(min_cell_count=15, glm_max_params_ratio=0.2, dominance_k=0.8)
        assert (p.min_cell_count, p.glm_max_params_ratio, p.dominance_k) == (15, 0.2, 0.8)

    @pytest.mark.parametrize(
        "change",
        [
            {"min_cell_count": 5},
            {"rounding_base": 1},
            {"zeros_are_disclosive": False},
            {"glm_max_params_ratio": 0.5},
            {"min_holders": 2},
            {"dominance_k": 0.95},
        ],
    )
    def test_tighten_refuses_when_a_setting_would_loosen(self, change: dict[str, object]) -> None:
        with pytest.raises(ConfigError, match="only tighten"):
            DisclosurePolicy().tighten(**change)

    def test_tighten_refuses_when_setting_unknown(self) -> None:
        with pytest.raises(ConfigError, match="no setting"):
            DisclosurePolicy().tighten(min_cells=12)


class TestCounts:
    def test_small_cell_suppressed_when_below_min_cell_count(self) -> None:
        out = sdc.protect_counts({"a": 4, "b": 40, "c": 55})
        assert out.counts["a"] is None
        assert any(a.rule is Rule.MIN_CELL and a.target == "cell[a]" for a in out.actions)

    def test_count_rounded_to_base_5_when_released(self) -> None:
        out = sdc.protect_counts({"a": 12, "b": 43, "c": 58})
        assert out.counts == {"a": 10, "b": 45, "c": 60}
        assert out.total == 115  # 113 rounded
        assert Rule.ROUNDING in _rules(out.actions)

    def test_zero_cell_suppressed_when_zeros_disclosive(self) -> None:
        out = sdc.protect_counts({"a": 0, "b": 40, "c": 30})
        assert out.counts["a"] is None
        assert Rule.ZERO_CELL in _rules(out.actions)

    def test_zero_cell_released_when_declared_structural(self) -> None:
        out = sdc.protect_counts({"a": 0, "b": 40, "c": 30}, structural=frozenset({"a"}))
        assert out.counts["a"] == 0
        assert Rule.ZERO_CELL not in _rules(out.actions)

    def test_secondary_suppression_hides_another_cell_when_total_would_reveal_one(self) -> None:
        out = sdc.protect_counts({"a": 3, "b": 40, "c": 30})
        assert out.counts["a"] is None
        assert out.counts["c"] is None  # smallest remaining cell
        assert out.counts["b"] == 40
        assert Rule.SECONDARY in _rules(out.actions)

    def test_secondary_suppression_covers_rows_and_columns_when_table_two_dimensional(self) -> None:
        table = np.array([[3, 40, 50], [30, 60, 70], [25, 35, 45]])
        out = sdc.protect_table(table)
        hidden = np.array([[c is None for c in row] for row in out.cells])
        assert hidden[0, 0]
        for i in range(3):
            if out.row_totals[i] is not None:
                assert hidden[i].sum() != 1
            if out.column_totals[i] is not None:
                assert hidden[:, i].sum() != 1

    def test_single_count_suppressed_when_feasibility_below_threshold(self) -> None:
        assert sdc.protect_count(7).total is None
        assert sdc.protect_count(23).total == 25


class TestRefusals:
    def test_subset_refused_when_smaller_than_min_subset_size(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_subset(9, 500)
        assert err.value.actions[0].rule is Rule.MIN_SUBSET

    def test_subset_refused_when_complement_smaller_than_min_complement_size(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_subset(495, 500)
        assert err.value.actions[0].rule is Rule.MIN_COMPLEMENT
        sdc.check_subset(500, 500)  # the whole set has no complement to protect
        sdc.check_subset(400, 500)

    def test_glm_refused_when_parameters_exceed_a_third_of_rows(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_glm(n=30, n_params=11)
        assert Rule.GLM_PARAMS in _rules(err.value.actions)

    def test_glm_refused_when_residual_dof_below_ten(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_glm(n=12, n_params=3, policy=DisclosurePolicy().tighten(glm_max_params_ratio=0.3))
        assert Rule.RESIDUAL_DOF in _rules(err.value.actions)

    def test_glm_refused_when_a_binary_level_is_rare(self) -> None:
        column = np.array([1] * 5 + [0] * 100)
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_binary_levels({"smoker": column})
        assert err.value.actions[0].rule is Rule.BINARY_LEVELS

    def test_mean_refused_when_two_contributors_dominate(self) -> None:
        values = [1000.0, 900.0] + [1.0] * 20
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_magnitude(values)
        assert err.value.actions[0].rule is Rule.DOMINANCE

    def test_sum_refused_when_p_ratio_rule_fires(self) -> None:
        # Top two hold 88 % (< 90 %), but the rest (20) is below p = 50 % of the largest (100).
        values = [100.0, 50.0] + [1.0] * 20
        sdc.check_dominance(values)  # at the default p = 10 % the (2, 0.9) rule already covers it
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_dominance(values, DisclosurePolicy().tighten(p_ratio=0.5))
        assert err.value.actions[0].rule is Rule.P_RATIO

    def test_mean_refused_when_fewer_than_ten_observations(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_magnitude([1.0, 2.0, 3.0])
        assert err.value.actions[0].rule is Rule.MIN_CELL

    def test_mean_passes_when_no_contributor_dominates(self) -> None:
        sdc.check_magnitude(np.linspace(10, 20, 50))

    def test_exact_extremes_refused_when_min_or_max_requested(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_quantiles([0.0, 0.5, 1.0])
        assert err.value.actions[0].rule is Rule.EXTREMES
        sdc.check_quantiles([0.05, 0.25, 0.5, 0.75, 0.95])

    def test_secure_sum_refused_when_fewer_than_three_holders(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_holders(2)
        assert err.value.actions[0].rule is Rule.MIN_HOLDERS

    def test_factor_refused_when_too_many_levels(self) -> None:
        with pytest.raises(DisclosureRefused):
            sdc.check_factor_levels("postcode", 41, 10_000)

    def test_action_serialises_to_plain_strings_when_put_in_provenance(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_holders(2)
        assert err.value.actions[0].as_dict() == {
            "rule": "min_holders",
            "action": "refuse",
            "target": "secure sum",
            "detail": "2 holders < 3",
        }

    def test_refusal_is_a_policy_denial_with_reasons_when_raised(self) -> None:
        with pytest.raises(PolicyDenied) as err:
            sdc.check_holders(1)
        assert err.value.reasons
        assert "min_holders" in err.value.reasons[0]


class TestHistogramAndSurvival:
    def test_small_bins_merged_when_below_min_cell_count(self) -> None:
        out = sdc.protect_histogram([0, 1, 2, 3, 4, 5], [20, 3, 4, 30, 2])
        assert sum(out.counts) >= 55
        assert all(c >= 10 for c in out.counts)
        assert out.edges[0] == 0
        assert out.edges[-1] == 5
        assert Action.MERGE in {a.action for a in out.actions}

    def test_histogram_refused_when_more_bins_than_a_third_of_rows(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.protect_histogram(list(range(12)), [2] * 11)
        assert err.value.actions[0].rule in {Rule.HISTOGRAM_BINS, Rule.MIN_CELL}
        with pytest.raises(DisclosureRefused) as err:
            sdc.protect_histogram(list(range(13)), [3] * 12)
        assert err.value.actions[0].rule is Rule.HISTOGRAM_BINS

    def test_survival_times_refused_when_unbinned(self) -> None:
        with pytest.raises(DisclosureRefused) as err:
            sdc.check_time_binning(1)
        assert err.value.actions[0].rule is Rule.SURVIVAL_BINNING
        sdc.check_time_binning(30)

    def test_ceil_binning_rounds_up_to_the_bin_when_times_fall_inside(self) -> None:
        assert list(sdc.bin_times([1, 30, 31, 59], 30)) == [30, 30, 60, 60]
        assert list(sdc.bin_times([1, 30, 31, 59], 30, rule="floor")) == [0, 30, 30, 30]

    def test_survival_table_truncated_when_at_risk_falls_below_ten(self) -> None:
        assert sdc.at_risk_cutoff([50, 30, 12, 9, 20]) == 3
        assert sdc.at_risk_cutoff([50, 30]) == 2
