"""Running sweeps: specs, planning, launching on Ray Tune, the Parquet store, SQL and verification."""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "ATTACK_KINDS": "spec",
    "AttackSection": "spec",
    "CurvesSection": "spec",
    "DEFAULT_SPEC": "spec",
    "DENIED_FUNCTIONS": "query",
    "DefenceSection": "spec",
    "ExecutionSection": "spec",
    "ExplainSection": "spec",
    "KEY_COLUMNS": "store",
    "LOCK_DIR": "store",
    "LearnerSection": "spec",
    "PART_NAME": "store",
    "PART_PREFIX": "store",
    "PRESETS_DIR": "spec",
    "Progress": "progress",
    "Report": "verify",
    "SAFE_TABLE_FUNCTIONS": "query",
    "SWEEP_ENTRIES": "verify",
    "Spec": "spec",
    "Store": "store",
    "StoreWriter": "launcher",
    "SweepOutcome": "launcher",
    "TABLES": "store",
    "TOKEN_HINT": "launcher",
    "TrialPlan": "plan",
    "atomic_write_bytes": "store",
    "check_part": "store",
    "check_query": "query",
    "connect": "query",
    "format_report": "verify",
    "init_ray": "launcher",
    "library_versions": "launcher",
    "load_spec": "spec",
    "normalise": "plan",
    "now_utc": "launcher",
    "parse_spec": "spec",
    "plan_trials": "plan",
    "read_part": "store",
    "run_query": "query",
    "run_sweep": "launcher",
    "stable_hash": "spec",
    "validate": "spec",
    "verify_store": "verify",
    "with_overrides": "spec",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
