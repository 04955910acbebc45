-- Nodes tell each other what changed, through NOTIFY (delivered when the transaction
-- commits). Each payload starts with the sender's application_name, which rlmd sets to
-- a name of its own per node, so a node can skip its own notices.

-- rlmd_events: "<node> <root_id> <run_id> <seq>" for each stored event.
CREATE FUNCTION rlmd_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rlmd_events', concat_ws(' ', current_setting('application_name'),
        NEW.root_id, NEW.run_id, NEW.seq));
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION rlmd_notify_event();

-- rlmd_queued: "<node>" when a run becomes claimable; rlmd_cancel: "<node> <run_id>" when
-- a cancel is asked for a running run.
CREATE FUNCTION rlmd_notify_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status <> 'queued') THEN
        PERFORM pg_notify('rlmd_queued', current_setting('application_name'));
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.status = 'running' AND NEW.cancel_requested = 1
            AND OLD.cancel_requested = 0 THEN
        PERFORM pg_notify('rlmd_cancel', concat_ws(' ', current_setting('application_name'),
            NEW.id));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER runs_notify AFTER INSERT OR UPDATE OF status, cancel_requested ON runs
    FOR EACH ROW EXECUTE FUNCTION rlmd_notify_run();
