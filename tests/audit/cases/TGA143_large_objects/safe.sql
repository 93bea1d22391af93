-- Documents as bytea in a protected tenant table: no large objects.
CREATE TABLE public.documents (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body bytea);
INSERT INTO public.documents (tenant_id, body) VALUES (1, 'tenant 1 contract');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.documents TO {app};
-- protect: public.documents
