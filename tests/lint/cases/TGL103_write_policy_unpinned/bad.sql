CREATE TABLE app.t (tenant_id bigint NOT NULL, id bigint PRIMARY KEY);
ALTER TABLE app.t ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.t FORCE ROW LEVEL SECURITY;
CREATE POLICY sel ON app.t FOR SELECT USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint));
CREATE POLICY ins ON app.t FOR INSERT WITH CHECK (true);
