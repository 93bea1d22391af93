CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);
INSERT INTO public.t (tenant_id, email) VALUES (1, 'a@x'), (2, 'b@x');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.t FORCE ROW LEVEL SECURITY;
CREATE POLICY sel ON public.t FOR SELECT USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint));
CREATE POLICY ins ON public.t FOR INSERT WITH CHECK (true);
