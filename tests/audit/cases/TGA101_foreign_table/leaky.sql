-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
CREATE FOREIGN DATA WRAPPER tg_dummy_fdw;
CREATE SERVER tg_remote FOREIGN DATA WRAPPER tg_dummy_fdw;
-- Foreign tables cannot have row level security.
CREATE FOREIGN TABLE public.remote_invoices (tenant_id bigint, amount numeric) SERVER tg_remote;
GRANT SELECT ON public.remote_invoices TO {app};
