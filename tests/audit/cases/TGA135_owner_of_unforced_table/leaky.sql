CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
-- protect: public.t
-- after: CREATE FUNCTION public.count_of(rel text) RETURNS bigint LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$ DECLARE n bigint; BEGIN EXECUTE format($q$SELECT count(*) FROM public.%I$q$, rel) INTO n; RETURN n; END $$;
-- after: ALTER TABLE public.t OWNER TO {owner}
-- after: ALTER FUNCTION public.count_of(text) OWNER TO {owner}
-- {owner} owns public.t, which does not FORCE row level security: RLS skips it
-- after: ALTER TABLE public.t NO FORCE ROW LEVEL SECURITY
