-- install: signed
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
GRANT SELECT ON tenantguard_keys.signing_keys TO {app};
-- protect: public.t
