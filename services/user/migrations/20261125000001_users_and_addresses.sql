-- Users, their addresses and the refresh tokens issued to them.
--
-- Constraint and index names are part of the code's contract: the store maps a violation of
-- `users_email_lower_key` to 409 "Email already registered" and of
-- `addresses_one_default_per_user` to 409, on purpose rather than by accident.

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Kept as the user typed it (trimmed); uniqueness and login ignore case.
    email         TEXT        NOT NULL,
    -- An argon2id PHC string that carries its own salt and cost parameters, so raising the
    -- parameters later does not invalidate existing hashes.
    password_hash TEXT        NOT NULL,
    first_name    TEXT        NOT NULL,
    last_name     TEXT        NOT NULL,
    phone         TEXT,
    is_active     BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- Emails are unique case-insensitively: Customer@Example.com and customer@example.com are one
-- account. The index also serves the login lookup `WHERE lower(email) = lower($1)`.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE addresses (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    line1       TEXT        NOT NULL,
    line2       TEXT,
    city        TEXT        NOT NULL,
    state       TEXT        NOT NULL,
    postal_code TEXT        NOT NULL,
    country     TEXT        NOT NULL,
    is_default  BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX addresses_user_id_index ON addresses (user_id, id);

-- At most one default address per user. The store unsets the old default in the same
-- transaction that sets a new one; this index makes any path that forgets to a loud error.
CREATE UNIQUE INDEX addresses_one_default_per_user ON addresses (user_id) WHERE is_default;

-- Refresh tokens are single use: each exchange at /auth/refresh consumes the token's `jti` and
-- issues a new pair, so a stolen refresh token that its owner has already used is worthless.
CREATE TABLE refresh_tokens (
    jti         UUID        PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  TIMESTAMPTZ NOT NULL,
    consumed_at TIMESTAMPTZ
);

CREATE INDEX refresh_tokens_user_id_index ON refresh_tokens (user_id);
