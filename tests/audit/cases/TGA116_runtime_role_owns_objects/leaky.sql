-- A protected tenant table: the audit refuses a database without one.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
-- A lookup table the runtime role owns (created before tenantguard): as its owner it can
-- attach a policy, a rule or a trigger that runs in every tenant's statements.
CREATE TABLE public.plans (id int PRIMARY KEY, name text);
ALTER TABLE public.plans OWNER TO {app};
-- Objects of other kinds it owns count too (every owner dependency, pg_shdepend).
CREATE TEXT SEARCH CONFIGURATION public.words (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION public.words OWNER TO {app};
