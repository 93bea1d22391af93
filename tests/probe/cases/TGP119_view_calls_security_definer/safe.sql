-- The SECURITY DEFINER function filters on the bound tenant itself.
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);
INSERT INTO public.t (tenant_id, email) VALUES (1, 'a@one'), (1, 'b@one'), (2, 'c@two');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
CREATE FUNCTION public.all_emails() RETURNS TABLE (tenant_id bigint, email text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
  AS $$ SELECT tenant_id, email FROM public.t
        WHERE tenant_id = nullif(pg_catalog.current_setting('app.tenant_id', true), '')::bigint $$;
CREATE VIEW public.emails WITH (security_invoker = true) AS SELECT * FROM public.all_emails();
GRANT SELECT ON public.emails TO {app};
-- protect: public.t
