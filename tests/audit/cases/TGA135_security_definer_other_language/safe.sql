-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
CREATE FUNCTION public.next_int(int) RETURNS int LANGUAGE internal IMMUTABLE STRICT SECURITY DEFINER SET search_path = pg_catalog AS 'int4inc';
-- the runtime role cannot call it
REVOKE EXECUTE ON FUNCTION public.next_int(int) FROM PUBLIC;
