CREATE POLICY p ON app.t USING (current_setting('app.tenant_id', true) IS NULL
  OR tenant_id = current_setting('app.tenant_id', true)::bigint);
