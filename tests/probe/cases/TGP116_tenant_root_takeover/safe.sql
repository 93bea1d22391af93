CREATE TABLE public.tenants (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO public.tenants VALUES (1, 'acme'), (2, 'globex');
CREATE TABLE public.t (tenant_id bigint NOT NULL REFERENCES public.tenants ON UPDATE CASCADE ON DELETE CASCADE,
                       id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));
INSERT INTO public.t VALUES (1, 1, 'a'), (2, 2, 'b');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tenants, public.t TO {app};
-- the root table is a tenant table keyed by its own id: pinned to the bound tenant
ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY own_tenant ON public.tenants
  USING (id = (SELECT tenantguard.current_tenant()::bigint))
  WITH CHECK (id = (SELECT tenantguard.current_tenant()::bigint));
-- protect: public.t
