CREATE FUNCTION app.tenant() RETURNS bigint LANGUAGE sql IMMUTABLE
  AS $$ SELECT current_setting('app.tenant_id')::bigint $$;
