-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
-- Before PostgreSQL 16 CREATEROLE can GRANT <table owner> TO itself, then NO FORCE RLS.
ALTER ROLE {app} CREATEROLE;
