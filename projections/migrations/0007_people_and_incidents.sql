-- The people and incidents the NotificationLog speaks of, so that "an incident's delivery
-- status with each person's name and email" is one join. Folded by the projection from the
-- users (compacted) and incidents topics.

CREATE TABLE person (
    user_id     text        PRIMARY KEY,
    name        text        NOT NULL,
    email       text,
    phone       text,
    time_zone   text        NOT NULL DEFAULT 'UTC',
    updated_at  timestamptz NOT NULL
);

COMMENT ON TABLE person IS 'Who can be paged: the latest profile of each user (from the users topic).';

CREATE TABLE incident (
    incident_id       text        PRIMARY KEY,
    title             text        NOT NULL,
    priority          text        CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    service           text,
    url               text,
    status            text        NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    escalation_level  integer     NOT NULL DEFAULT 1,
    opened_at         timestamptz,
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    resolved_at       timestamptz,
    resolved_by       text,
    last_event_at     timestamptz NOT NULL
);

COMMENT ON TABLE incident IS 'Each incident as the incidents topic tells it: what, how urgent, opened, acknowledged, resolved.';

CREATE INDEX incident_open ON incident (status, opened_at) WHERE status <> 'resolved';
