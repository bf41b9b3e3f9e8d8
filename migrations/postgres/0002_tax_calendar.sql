-- Tax-calendar tasks (PostgreSQL): a task may now come from the tax calendar instead of a mail, so
-- `tasks.message` becomes nullable, and `event` + `period` name the obligation.
ALTER TABLE tasks ALTER COLUMN message DROP NOT NULL;
ALTER TABLE tasks ADD COLUMN event TEXT;
ALTER TABLE tasks ADD COLUMN period TEXT;
-- One task per client + obligation + period, however often generation runs. Mail tasks have NULL event/period,
-- and NULLs are distinct in a unique index, so they never collide here.
CREATE UNIQUE INDEX tasks_calendar_key ON tasks (client_inn, event, period);
