CREATE TABLE public.base (id bigint NOT NULL, body text);
CREATE TABLE public.notes (tenant_id bigint NOT NULL, PRIMARY KEY (tenant_id, id)) INHERITS (public.base);
INSERT INTO public.notes (tenant_id, id, body) VALUES (1, 1, 'a'), (2, 2, 'b');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base, public.notes TO {app};
-- protect: public.notes
