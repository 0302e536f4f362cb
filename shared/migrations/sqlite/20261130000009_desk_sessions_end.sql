-- A session ends when its user's password changes (the fingerprint of the hash it was made
-- with no longer matches) and after desk.session_idle_timeout without a request.
ALTER TABLE desk_sessions ADD COLUMN password_fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE desk_sessions ADD COLUMN last_seen_ms BIGINT NOT NULL DEFAULT 0;
