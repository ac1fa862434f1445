-- Login tokens expire (MINITOWER_LOGIN_TOKEN_TTL); other tokens keep NULL
-- and live until revoked.
ALTER TABLE tokens ADD COLUMN expires_at TIMESTAMPTZ;
