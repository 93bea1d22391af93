CREATE TABLE public.parent (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, UNIQUE (tenant_id, id));
CREATE TABLE public.currencies (code text PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.parent TO {app};
GRANT SELECT ON public.currencies TO {app};
CREATE TABLE public.child (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id bigint REFERENCES public.parent (id));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.child TO {app};
-- protect: public.parent public.child
