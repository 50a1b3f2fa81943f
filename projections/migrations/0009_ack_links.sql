-- One-time links are put in Teams cards too: remember which channel a link was sent on, so
-- the acknowledgement it publishes says how the person answered (via email_link or
-- teams_link). Links issued before this migration were all in emails.
ALTER TABLE magic_link
    ADD COLUMN channel text NOT NULL DEFAULT 'EMAIL' CHECK (channel IN ('EMAIL', 'TEAMS'));
