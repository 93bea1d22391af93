-- install: signed
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);
INSERT INTO public.t (tenant_id, email) VALUES (1, 'a@x'), (2, 'b@x');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.t FORCE ROW LEVEL SECURITY;
-- a hand-written pair that reads the plain setting: fail-closed, but not signed
CREATE POLICY guard ON public.t AS RESTRICTIVE
  USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::bigint))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::bigint));
CREATE POLICY access ON public.t
  USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::bigint))
  WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::bigint));
