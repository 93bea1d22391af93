-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
-- PostgreSQL's documented alternative to pg_read_server_files: the runtime role reads any
-- file of the server, its write-ahead log (every tenant's recent rows) too.
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO {app};
