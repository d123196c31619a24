"""Collection and document names, in one place."""

OBSERVATIONS = "ops_observations"
REWARDS = "ops_rewards"
STATS = "ops_stats"
POLICIES = "ops_policies"
AUDIT = "ops_audit"
ALERTS = "ops_alerts"
CONFIG = "config"
# Internal to the loop (no client access in firestore.rules):
BUCKETS = "ops_buckets"  # per component x level x bucket sufficient statistics
RUNS = "ops_runs"  # scoring cursor, leases, one document per scheduled run
POLICY_HEADS = "ops_policy_heads"  # per policy id: active version and activation history

REWARD_CONFIG_DOC = "reward_config"
FLAGS_DOC = "flags"
SCORING_DOC = "scoring"
TUNING_DOC = "tuning"
SCORE_CURSOR_DOC = "score-cursor"


def bucket_id(component: str, level: str, start_ms: int) -> str:
    return f"{component}~{level}~{start_ms}"


def stats_id(component: str, window: str) -> str:
    return f"{component}~{window}"
