-- How many times each attempt was made: a copy of its command sent again (after a crash)
-- shows as 2 or more, where the row alone said "1 attempt"; 0 for a notification carried in
-- another's request (a throttle's bundle). Rows written before this migration are taken as
-- made once.

ALTER TABLE notification_attempt
    ADD COLUMN requests          integer     NOT NULL DEFAULT 1 CHECK (requests >= 0),
    ADD COLUMN last_requested_at timestamptz;

COMMENT ON COLUMN notification_attempt.requests IS
    'How many times this attempt was made (its DeliveryAttempted events): more than 1 when a copy of its command was sent again; 0 when it was carried in another notification''s request (a bundle).';
COMMENT ON COLUMN notification_attempt.last_requested_at IS
    'When the attempt was last made: a DeliveryAttempted no later than this is one already counted (read again), not a new request.';
