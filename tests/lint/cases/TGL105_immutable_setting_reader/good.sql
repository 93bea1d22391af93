CREATE FUNCTION app.tenant() RETURNS bigint LANGUAGE sql STABLE
  AS $$ SELECT current_setting('app.tenant_id')::bigint $$;
