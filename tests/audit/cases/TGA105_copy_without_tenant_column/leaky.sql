CREATE TABLE public.invoices (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric NOT NULL, note text);
INSERT INTO public.invoices (tenant_id, amount, note) SELECT g % 3 + 1, g * 10, 'n' || g FROM generate_series(1, 20) g;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.invoices TO {app};
-- protect: public.invoices
-- after: CREATE TABLE public.invoices_2025 AS SELECT id, amount FROM public.invoices
-- after: GRANT SELECT ON public.invoices_2025 TO {app}
