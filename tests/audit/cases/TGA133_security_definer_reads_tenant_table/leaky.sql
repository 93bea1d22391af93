CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric);
INSERT INTO public.t (tenant_id, amount) VALUES (1, 10), (2, 20);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
-- protect: public.t
-- after: CREATE FUNCTION public.amount_of(i bigint) RETURNS numeric LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_catalog AS $$ DECLARE a numeric; BEGIN SELECT x.amount INTO a FROM t x WHERE x.id = i; RETURN a; END $$;
