-- Staff is decided by an operator (`user-service staff grant EMAIL`), not by an email address:
-- emails are not verified, so whoever registered an address named in a list first would be staff.
-- Read at every login and refresh, like the account's other roles.
ALTER TABLE users ADD COLUMN is_staff BOOLEAN NOT NULL DEFAULT FALSE;
