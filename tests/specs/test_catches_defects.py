"""The specs catch the classic defects.

For each defect a throwaway backend (``reference_backend.py``, correct except
for the one defect switched on) is registered as a plugin and the relevant
specs run against it in-process: they must fail, and the specs that do not
involve the defect must still pass. The same backend without any defect
passes every spec, so the failures are the defect's and nothing else's.
"""

from __future__ import annotations

import pytest

from tests.specs.reference_backend import ReferencePlugin

#: defect -> (specs to run: a -k expression, spec ids that must fail, spec ids that must pass)
DEFECTS = {
    "offset_ignored": (
        "attention or decode or chunked",
        [
            "attention::test_matches_oracle[float32-decode]",
            "attention::test_matches_oracle[float32-chunk_offset]",
            "attention::test_matches_oracle[float32-decode_row_offsets]",
            "model::test_decode_equals_full_recompute[float32]",
            "model::test_chunked_prefill_equals_one_shot[float32-5+5+10]",
        ],
        ["attention::test_matches_oracle[float32-prefill]"],
    ),
    "no_sinks": (
        "attention or logits",
        [
            "attention::test_matches_oracle[float32-prefill]",
            "attention::test_matches_oracle[float32-decode]",
            "model::test_logits_match_oracle[float32-bf16]",
        ],
        [],
    ),
    "window_off_by_one": (
        "attention or logits",
        [
            "attention::test_matches_oracle[float32-prefill_window]",
            "attention::test_matches_oracle[float32-decode_window]",
            "attention::test_masked_keys_do_not_leak[float32]",
            "model::test_logits_match_oracle[float32-bf16]",
        ],
        [
            "attention::test_matches_oracle[float32-prefill]",
            "attention::test_matches_oracle[float32-decode]",
        ],
    ),
    "temperature_inverted": (
        "sampler or sampling_frequencies",
        [
            "model::test_sampling_frequencies_follow_oracle[float32]",
            "sampler::test_probabilities_match_oracle[float32-t0.6]",
            "sampler::test_probabilities_match_oracle[float32-t1.7]",
            "sampler::test_frequencies_match_oracle[float32-t0.6]",
            "sampler::test_frequencies_match_oracle[float32-t1.7]",
        ],
        [
            "sampler::test_probabilities_match_oracle[float32-t1]",
            "sampler::test_temperature_zero_is_argmax[float32]",
        ],
    ),
    "top_p_one_too_few": (
        "sampler",
        [
            "sampler::test_probabilities_match_oracle[float32-top_p]",
            "sampler::test_probabilities_match_oracle[float32-top_k_top_p]",
            "sampler::test_frequencies_match_oracle[float32-top_p]",
        ],
        [
            "sampler::test_probabilities_match_oracle[float32-top_k]",
            "sampler::test_frequencies_match_oracle[float32-t1]",
        ],
    ),
    "rope_interleaved": (
        "model and (logits or greedy)",
        [
            "model::test_logits_match_oracle[float32-bf16]",
            "model::test_logits_match_oracle[float32-mxfp4]",
        ],
        [],
    ),
    "softmax_all_experts": (
        "routing or logits",
        [
            "routing::test_route_matches_oracle[float32-e4_k2]",
            "routing::test_route_matches_oracle[float32-e8_k4]",
            "model::test_logits_match_oracle[float32-bf16]",
        ],
        ["routing::test_experts_match_oracle[float32-e4_k2]"],
    ),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_specs_fail_on_defect(run_specs_on, defect):
    select, must_fail, must_pass = DEFECTS[defect]
    code, outcomes = run_specs_on(ReferencePlugin("broken", {defect}), "broken", select=select)
    assert code == 1, f"pytest exit code {code}: the specs did not fail on {defect}"
    for spec in must_fail:
        assert spec in outcomes, f"{spec} did not run; ran {sorted(outcomes)}"
        assert outcomes[spec].outcome == "failed", (
            f"{spec} {outcomes[spec].outcome} despite {defect}"
        )
    for spec in must_pass:
        assert outcomes[spec].outcome == "passed", f"{spec}: {outcomes[spec]}"


def test_correct_reference_backend_passes_every_spec(run_specs_on):
    code, outcomes = run_specs_on(ReferencePlugin("sound"), "sound", dtypes=("float32", "bfloat16"))
    failed = {k: o.reason for k, o in outcomes.items() if o.outcome in ("failed", "error")}
    assert not failed, failed
    assert sum(o.outcome == "passed" for o in outcomes.values()) > 80
