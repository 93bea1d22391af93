CREATE TABLE app.docs (tenant_id bigint NOT NULL, id bigint PRIMARY KEY, visibility text NOT NULL);
ALTER TABLE app.docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.docs FORCE ROW LEVEL SECURITY;
CREATE POLICY tg ON app.docs AS RESTRICTIVE FOR ALL
  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))
  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));
CREATE POLICY mine ON app.docs FOR ALL
  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))
  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));
CREATE POLICY public_docs ON app.docs FOR SELECT USING (visibility = 'public');
