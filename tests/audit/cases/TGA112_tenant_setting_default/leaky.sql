ALTER ROLE {app} SET app.tenant_id = '1';
