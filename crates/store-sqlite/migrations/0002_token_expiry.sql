-- Login tokens expire (MINITOWER_LOGIN_TOKEN_TTL); other tokens keep NULL
-- and live until revoked. Milliseconds since the epoch, like every time here.
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
