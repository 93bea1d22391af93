-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
-- The same lookup table owned by the admin, only read by the runtime role.
CREATE TABLE public.plans (id int PRIMARY KEY, name text);
GRANT SELECT ON public.plans TO {app};
