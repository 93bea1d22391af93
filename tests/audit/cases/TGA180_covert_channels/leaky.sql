CREATE FUNCTION public.ping(t bigint) RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('events', t::text); END $$;
