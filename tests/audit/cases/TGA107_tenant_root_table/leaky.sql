CREATE TABLE public.tenants (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO public.tenants VALUES (1, 'acme'), (2, 'globex');
CREATE TABLE public.t (tenant_id bigint NOT NULL REFERENCES public.tenants ON UPDATE CASCADE ON DELETE CASCADE,
                       id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));
INSERT INTO public.t VALUES (1, 1, 'a'), (2, 2, 'b');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tenants, public.t TO {app};
-- protect: public.t
