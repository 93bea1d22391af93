-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
