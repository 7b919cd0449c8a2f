-- Finished jobs in the order they finished, for the retention sweep (`jobs.keep_done_hours`):
-- it deletes the oldest without reading live or recent jobs. Only `done` rows are in it.
CREATE INDEX jobs_done ON jobs (updated_at) WHERE state = 'done';
