-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
-- pg_stat_file reads a file's size and times, not its content: not a way to the rows.
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text) TO {app};
