CREATE FUNCTION public.ping(t bigint) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RETURN; END $$;
