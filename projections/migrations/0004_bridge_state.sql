-- State of the webhook bridge. Not part of the NotificationLog read model: a rebuild keeps it.

-- One-time acknowledge/resolve links put in alert emails. Only the SHA-256 of each token is
-- kept, so a leaked table opens nothing; each token does one action, once, before it expires.
CREATE TABLE magic_link (
    token_sha256     text        PRIMARY KEY,
    action           text        NOT NULL CHECK (action IN ('acknowledge', 'resolve')),
    incident_id      text        NOT NULL,
    notification_id  uuid        NOT NULL,
    user_id          text        NOT NULL,
    issued_at        timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz
);

CREATE INDEX magic_link_expiry ON magic_link (expires_at);

-- Signatures of signed requests already accepted: the same signed request twice is a replay.
CREATE TABLE seen_request (
    signature_sha256  text        PRIMARY KEY,
    source            text        NOT NULL,
    seen_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX seen_request_age ON seen_request (seen_at);
