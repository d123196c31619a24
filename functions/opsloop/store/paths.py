"""Collection and document names, in one place."""

OBSERVATIONS = "ops_observations"
REWARDS = "ops_rewards"
STATS = "ops_stats"
POLICIES = "ops_policies"
AUDIT = "ops_audit"
AUDIT_CHAINS = "ops_audit_chains"  # per chain: last seq and hash of the tamper-evident audit
ALERTS = "ops_alerts"
SKILL_CARDS = "ops_skill_cards"  # per component (and per router policy): strengths, failure modes, trends
CONFIG = "config"
EXPERIMENTS = "ops_experiments"  # one per canary that ended: both arms' params and rewards
# Internal to the loop (no client access in firestore.rules):
BUCKETS = "ops_buckets"  # per component x level x bucket sufficient statistics
BUCKET_DELTAS = "ops_bucket_deltas"  # per scored chunk: statistics not yet added to the buckets
RUNS = "ops_runs"  # scoring cursor, leases, one document per scheduled run
POLICY_HEADS = "ops_policy_heads"  # per policy id: active version, activation history, running rollout
ROLLOUTS = "ops_rollouts"  # one per shadow/canary, with its evaluations as a subcollection
COMPONENTS = "ops_components"  # per component: the newest event time scored (which components stats cover)
DRIFT = "ops_drift"  # per component: the latest drift tests and open episodes
LEARNING = "ops_learning"  # per policy: what each change did (matched windows) and the loop's decision rates
EVENTS = "ops_events"  # per event (drift, safety rollback, promotion, draft, config error, failure): delivery
FEEDBACK = "ops_feedback"  # per feedback id: metrics that arrived after an observation, pending or applied

REWARD_CONFIG_DOC = "reward_config"
FLAGS_DOC = "flags"
SCORING_DOC = "scoring"
TUNING_DOC = "tuning"
ROLLOUT_DOC = "rollout"
DRIFT_DOC = "drift"
SCORE_CURSOR_DOC = "score-cursor"  # the global scanner's; a shard's is score-cursor~<key>
SHARD_LAYOUT_DOC = "shard-layout"  # in RUNS: the scoring shards in use and those draining (domain/shards)
GENERATIONS_DOC = "reward-generations"  # in RUNS: which reward generation readers use, and the backfill
CONFIG_GOOD_DOC = "config-good"  # in RUNS: the last config/* documents that parsed, per name
STATS_RUN_DOC = "stats-run"  # in RUNS: when the stats were last refreshed, for which generation (scoring)
BUCKET_INDEX_DOC = "bucket-index"  # in RUNS: since when chunks record which buckets hold data (presence)
STATS_MARK_DOC = "stats-mark"  # in RUNS: Firestore's time just before a run's last fold (its stats' data)
SKILL_CARDS_RUN_DOC = "skill-cards"  # in RUNS: the schedule time the cards were last refreshed for
SKILL_CARDS_DOC = "skill_cards"  # in CONFIG: thresholds of the judgement
EVENTS_CURSOR_DOC = "events-cursor"  # in RUNS: the newest audit and alert times the event delivery has seen


def score_cursor_doc(shard: str | None) -> str:
    return SCORE_CURSOR_DOC if shard is None else f"{SCORE_CURSOR_DOC}~{shard}"


def bucket_id(component: str, level: str, start_ms: int) -> str:
    return f"{component}~{level}~{start_ms}"


def arm_key(policy_version: str, arm: str) -> str:
    """The pseudo-component under which observations of one rollout arm are bucketed."""
    return f"arm:{policy_version}:{arm}"


def policy_key(policy_id: str) -> str:
    """The pseudo-component under which every observation of any version of a policy is bucketed."""
    return f"policy:{policy_id}"


def stats_id(component: str, window: str) -> str:
    return f"{component}~{window}"
