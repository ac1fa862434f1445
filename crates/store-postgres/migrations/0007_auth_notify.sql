-- Replicas cache token and runner identities (server auth_cache.rs); this
-- tells every replica at commit that one may have changed, so a revoked
-- token or a rotated runner token stops working on all of them at once.
-- Only the columns an identity is made of fire it: recording a token's
-- last use or refusal does not.
CREATE FUNCTION minitower_auth_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('minitower_auth', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tokens_auth_changed
    AFTER UPDATE OF revoked_at, expires_at, role, scope, token_hash, team_id OR DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION minitower_auth_changed();

CREATE TRIGGER runners_auth_changed
    AFTER UPDATE OF token_hash, name, environment, max_concurrency OR DELETE ON runners
    FOR EACH STATEMENT EXECUTE FUNCTION minitower_auth_changed();

CREATE TRIGGER teams_auth_changed
    AFTER UPDATE OF slug, name OR DELETE ON teams
    FOR EACH STATEMENT EXECUTE FUNCTION minitower_auth_changed();
