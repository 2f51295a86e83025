-- Refresh-token rotation with reuse detection. Every refresh token belongs to the family of the
-- login it descends from (the login's first token names it). A refresh token presented a second
-- time means two parties hold it (its owner and a thief, in some order): every token of its family
-- is revoked, so neither keeps a renewable session. Logout revokes all of a user's tokens.
ALTER TABLE refresh_tokens ADD COLUMN family_id UUID;
UPDATE refresh_tokens SET family_id = jti WHERE family_id IS NULL;
ALTER TABLE refresh_tokens ALTER COLUMN family_id SET NOT NULL;
ALTER TABLE refresh_tokens ADD COLUMN revoked_at TIMESTAMPTZ;
CREATE INDEX refresh_tokens_family_id_index ON refresh_tokens (family_id);
