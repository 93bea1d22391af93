CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric);
INSERT INTO public.t (tenant_id, amount) VALUES (1, 10), (2, 20);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
-- protect: public.t
-- The table is named only in a string run by EXECUTE: the parser cannot see it.
-- after: CREATE FUNCTION public.count_of(rel text) RETURNS bigint LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$ DECLARE n bigint; BEGIN EXECUTE format($q$SELECT count(*) FROM public.%I$q$, rel) INTO n; RETURN n; END $$;
