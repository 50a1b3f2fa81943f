-- Quiet hours: a notification held until the end of the person's quiet hours says until
-- when and why; one sent on the person's quiet-hours channel instead says why, with no
-- held_until. Both stay NULL for everything else.

ALTER TABLE notification_log
    ADD COLUMN held_until  timestamptz,
    ADD COLUMN held_reason text;

COMMENT ON COLUMN notification_log.held_until IS
    'Held until then (UTC): the end of the person''s quiet hours; the row stays QUEUED until the bundle goes out.';
COMMENT ON COLUMN notification_log.held_reason IS
    'Why quiet hours held it, or sent it on the quiet-hours channel instead.';
