-- What happened to a person as a whole, not to one notification: nobody could be reached on
-- any channel (and why), a tier failed and the next one was tried, email and SMS both failed
-- and the operations team was paged. Folded from delivery.events by the projection.

CREATE TABLE user_event (
    event_id          text        PRIMARY KEY,
    incident_id       text        NOT NULL,
    user_id           text        NOT NULL,
    escalation_level  integer     NOT NULL,
    kind              text        NOT NULL
        CHECK (kind IN ('UNREACHABLE', 'TIER_ESCALATED', 'CRITICAL_FAILURE')),
    from_tier         text        CHECK (from_tier IN ('PRIMARY', 'SECONDARY', 'FALLBACK')),
    to_tier           text        CHECK (to_tier IN ('PRIMARY', 'SECONDARY', 'FALLBACK')),
    reason            text,
    failed_channels   text[],
    ops_incident_id   text,
    occurred_at       timestamptz NOT NULL
);

COMMENT ON TABLE user_event IS
    'Who could not be reached and why, tier escalations and critical delivery failures: one row per event.';

-- "What happened to the people of incident X?"
CREATE INDEX user_event_incident ON user_event (incident_id, user_id);
