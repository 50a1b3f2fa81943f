-- Lighter writes for the projection, which updates each notification_log row two or three
-- times within seconds of inserting it (issue #14: its PostgreSQL CPU per notification).
--
-- Two indexes no query uses: callbacks carry their notification's id (none looks a row up by
-- the provider's message id), and no query filters a channel by queueing time
-- (channel_success_rate reads the whole table).
DROP INDEX IF EXISTS notification_log_provider_message;
DROP INDEX IF EXISTS notification_log_channel_time;

-- A person's rows by user_id alone: status changed with every event, so every update wrote a
-- new entry into each index of the table. With no indexed column changing, an update is a
-- heap-only (HOT) one and touches no index. A person's rows are few: "what has not reached
-- a person yet" filters their status in the table.
CREATE INDEX notification_log_user ON notification_log (user_id);
DROP INDEX IF EXISTS notification_log_user_status;

-- Room on each page for the updates that follow an insert, so they stay on the page (HOT).
ALTER TABLE notification_log SET (fillfactor = 80);
ALTER TABLE notification_attempt SET (fillfactor = 80);
