-- Who marked a task done and when (the web view shows it beside its undo); both empty while the task is open.
ALTER TABLE tasks ADD COLUMN done_by TEXT;
ALTER TABLE tasks ADD COLUMN done_at TEXT;
