CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, is_public boolean NOT NULL DEFAULT false, body text);
INSERT INTO public.t (tenant_id, is_public, body) VALUES (1, true, 'a'), (2, false, 'b');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
-- protect: public.t
-- after: CREATE POLICY shared ON public.t FOR SELECT USING (tenant_id = (SELECT current_setting('app.tenant_id')::bigint) OR is_public);
