-- The NotificationLog: one row per notification (incident x level x user x channel [x repeat]).
-- Rows are written only by the projection, from delivery.events and provider.callbacks,
-- so the whole model can be dropped and rebuilt from the topics.

CREATE TABLE notification_log (
    notification_id      uuid        PRIMARY KEY,
    incident_id          text        NOT NULL,
    user_id              text        NOT NULL,
    channel              text        NOT NULL
        CHECK (channel IN ('EMAIL', 'SMS', 'PUSH', 'SLACK', 'TEAMS', 'VOICE', 'WEBHOOK')),
    tier                 text        CHECK (tier IN ('PRIMARY', 'SECONDARY', 'FALLBACK')),
    escalation_level     integer,
    priority             text        CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    kind                 text        CHECK (kind IN ('ALERT', 'ACKNOWLEDGED_NOTICE', 'RESOLVED_NOTICE')),
    repeat               integer     NOT NULL DEFAULT 0,
    status               text        NOT NULL
        CHECK (status IN ('QUEUED', 'SENDING', 'SENT', 'DELIVERED', 'FAILED', 'CANCELLED')),
    provider             text,
    provider_message_id  text,
    error                text,
    error_category       text        CHECK (error_category IN ('TRANSIENT', 'PERMANENT', 'CONFIGURATION')),
    attempt_count        integer     NOT NULL DEFAULT 0,
    queued_at            timestamptz,
    sent_at              timestamptz,
    delivered_at         timestamptz,
    failed_at            timestamptz,
    cancelled_at         timestamptz,
    last_attempt_at      timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE notification_log IS
    'Who was told what, when, and did it arrive: one row per notification, folded from delivery.events.';

-- "What happened for incident X?"
CREATE INDEX notification_log_incident ON notification_log (incident_id, user_id);
-- "What is still pending or failed for user Y?"
CREATE INDEX notification_log_user_status ON notification_log (user_id, status);
-- Provider callbacks find their row by the provider's message id.
CREATE INDEX notification_log_provider_message ON notification_log (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- Per-channel health over a time window.
CREATE INDEX notification_log_channel_time ON notification_log (channel, queued_at);

-- One row per attempt to reach a provider.
CREATE TABLE notification_attempt (
    notification_id      uuid        NOT NULL REFERENCES notification_log ON DELETE CASCADE,
    attempt              integer     NOT NULL CHECK (attempt >= 1),
    channel              text        NOT NULL,
    provider             text,
    outcome              text        NOT NULL CHECK (outcome IN ('PENDING', 'SENT', 'FAILED')),
    provider_message_id  text,
    error                text,
    error_category       text,
    status_code          integer,
    latency_ms           integer,
    started_at           timestamptz,
    finished_at          timestamptz,
    PRIMARY KEY (notification_id, attempt)
);

COMMENT ON TABLE notification_attempt IS
    'Each request made to a provider for a notification, with its outcome and latency.';

-- Consumed offsets, written in the same transaction as the rows they produced, so a
-- restart resumes exactly where the committed read model ends.
CREATE TABLE projection_offset (
    projection   text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    next_offset  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
