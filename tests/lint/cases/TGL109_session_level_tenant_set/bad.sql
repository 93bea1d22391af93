SET app.tenant_id = '1';
SELECT set_config('app.tenant_id', '1', false);
