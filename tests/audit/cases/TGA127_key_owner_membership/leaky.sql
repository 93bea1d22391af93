-- install: signed
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
GRANT {keys} TO {app};
-- protect: public.t
