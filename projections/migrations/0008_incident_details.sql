-- The incident's details as the incident tool tells them (team, alert count, when it was
-- triggered, its dashboard), and INFO: a priority below LOW that only informs. Every new
-- column is nullable: incidents opened before these details existed have none.

ALTER TABLE incident
    ADD COLUMN team_name      text,
    ADD COLUMN alert_count    integer,
    ADD COLUMN triggered_at   timestamptz,
    ADD COLUMN dashboard_url  text;

COMMENT ON COLUMN incident.team_name IS 'Team that owns the incident, as the latest incident event named it.';
COMMENT ON COLUMN incident.alert_count IS 'Alerts the incident has grouped, as the latest incident event that said so counted them.';
COMMENT ON COLUMN incident.triggered_at IS 'When the incident was first triggered (the earliest any incident event said).';
COMMENT ON COLUMN incident.dashboard_url IS 'Link to the incident''s dashboard.';

-- the priority checks of 0001 and 0007, with INFO (PostgreSQL named them <table>_priority_check)
ALTER TABLE incident DROP CONSTRAINT incident_priority_check;
ALTER TABLE incident ADD CONSTRAINT incident_priority_check
    CHECK (priority IN ('INFO', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'));

ALTER TABLE notification_log DROP CONSTRAINT notification_log_priority_check;
ALTER TABLE notification_log ADD CONSTRAINT notification_log_priority_check
    CHECK (priority IN ('INFO', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'));
