CREATE POLICY p ON app.t USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint));
