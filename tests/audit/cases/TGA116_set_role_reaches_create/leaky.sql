-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
-- A role with CREATE on the database that the runtime role can SET ROLE to, without
-- inheriting its privileges (a NOINHERIT login): SET LOCAL ROLE reaches CREATE.
ALTER ROLE {app} NOINHERIT;
DO $$ BEGIN
  EXECUTE format('CREATE ROLE %I NOLOGIN', 'maker_' || current_database());
  EXECUTE format('GRANT CREATE ON DATABASE %I TO %I', current_database(), 'maker_' || current_database());
  EXECUTE format('GRANT %I TO {app}', 'maker_' || current_database());
END $$;
