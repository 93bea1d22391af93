CREATE TABLE public.memberships (user_id text NOT NULL, org_id bigint NOT NULL);
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);
INSERT INTO public.memberships VALUES ('alice', 1), ('bob', 2);
INSERT INTO public.t (tenant_id, body) VALUES (1, 'a'), (2, 'b');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
GRANT SELECT ON public.memberships TO {app};
ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.t FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON public.t
  USING (tenant_id IN (SELECT m.org_id FROM public.memberships m WHERE m.user_id = current_setting('app.user_id')))
  WITH CHECK (tenant_id IN (SELECT m.org_id FROM public.memberships m WHERE m.user_id = current_setting('app.user_id')));
