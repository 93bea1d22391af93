CREATE TABLE app.t (tenant_id bigint NOT NULL, id bigint PRIMARY KEY);
ALTER TABLE app.t ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.t FORCE ROW LEVEL SECURITY;
CREATE POLICY tg ON app.t AS RESTRICTIVE FOR ALL TO PUBLIC
  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))
  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));
CREATE POLICY acc ON app.t FOR ALL TO PUBLIC
  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))
  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));
CREATE TABLE app.totals AS SELECT count(*) AS n FROM app.other;
