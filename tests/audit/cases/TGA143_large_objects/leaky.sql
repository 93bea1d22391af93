-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
-- The app connection stores a document as a large object: owned by the runtime role,
-- so every tenant's session can read it.
SET ROLE {app};
SELECT lo_from_bytea(0, 'tenant 1 contract');
RESET ROLE;
