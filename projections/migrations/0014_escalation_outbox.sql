-- What the projection's escalation decisions emit (TierEscalated, EscalateTier, the critical
-- self-alert), written in the transaction that took the decision and published after it
-- commits: a crash between the two publishes it again (its ids are deterministic, so a
-- copy changes nothing), never not at all. Not part of the read model: a rebuild keeps it.
CREATE TABLE escalation_outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,  -- logical name, without the deployment's prefix
    key bytea,
    value bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
