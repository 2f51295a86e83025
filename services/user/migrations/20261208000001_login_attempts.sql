-- Login throttling shared by every replica of the user service: each login attempt an account
-- may make is claimed here (under a per-account lock) before its password is checked, and stays
-- counted unless the login succeeds. Rows older than the throttling window are deleted as logins
-- go; what an account made recently is all there is.
CREATE TABLE login_attempts (
    id BIGSERIAL PRIMARY KEY,
    -- The email as logins match it: trimmed, lower case.
    email TEXT NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX login_attempts_by_email ON login_attempts (email, attempted_at);
CREATE INDEX login_attempts_by_time ON login_attempts (attempted_at);
