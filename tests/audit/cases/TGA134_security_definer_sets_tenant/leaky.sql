CREATE FUNCTION public.switch_tenant(t bigint) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  PERFORM set_config('app.tenant_id', t::text, false);
END $$;
