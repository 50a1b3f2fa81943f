-- What the providers said about each notification, from provider.callbacks.
-- Written only by the projection, like the rest of the read model, and rebuilt with it.

-- One row per callback event, kept: the audit of "did it arrive?". A callback may be consumed
-- before its notification's row exists (the two topics are read side by side); it waits here
-- with applied_at NULL and is folded into notification_log, in the provider's time order, by
-- the batch that creates the row. So no foreign key to notification_log.
CREATE TABLE provider_callback (
    event_id             text        PRIMARY KEY,
    notification_id      uuid        NOT NULL,
    incident_id          text        NOT NULL,
    user_id              text,
    channel              text        NOT NULL
        CHECK (channel IN ('EMAIL', 'SMS', 'PUSH', 'SLACK', 'TEAMS', 'VOICE', 'WEBHOOK')),
    provider             text        NOT NULL,
    provider_message_id  text,
    status               text        NOT NULL
        CHECK (status IN ('SENT', 'DELIVERED', 'DEFERRED', 'FAILED')),
    raw_status           text        NOT NULL,
    error                text,
    occurred_at          timestamptz NOT NULL,
    received_at          timestamptz NOT NULL,
    applied_at           timestamptz
);

COMMENT ON TABLE provider_callback IS
    'What the providers said about each notification (delivered, bounced, ...), one row per callback event.';
COMMENT ON COLUMN provider_callback.user_id IS 'The user, when the callback names it.';
COMMENT ON COLUMN provider_callback.status IS
    'Normalised status: SENT, DELIVERED, DEFERRED or FAILED (a bounce, undelivered).';
COMMENT ON COLUMN provider_callback.raw_status IS 'The provider''s own word for it.';
COMMENT ON COLUMN provider_callback.occurred_at IS 'When the provider says the status changed.';
COMMENT ON COLUMN provider_callback.received_at IS 'When the webhook bridge received the callback.';
COMMENT ON COLUMN provider_callback.applied_at IS
    'When it was folded into notification_log; NULL while its notification''s row does not exist yet.';

-- "What did the providers say about this notification?", in the provider's time order.
CREATE INDEX provider_callback_notification ON provider_callback (notification_id, occurred_at);
-- Callbacks waiting for their notification's row: every batch looks its notifications up here.
CREATE INDEX provider_callback_unapplied ON provider_callback (notification_id)
    WHERE applied_at IS NULL;
