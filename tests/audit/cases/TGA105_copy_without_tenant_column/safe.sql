-- Same column names and types as the tenant table, but other data: not a copy. (The
-- core's own schema has the same shape: app.tenants (id, name) vs app.projects.)
CREATE TABLE public.invoices (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric NOT NULL, note text);
INSERT INTO public.invoices (tenant_id, amount, note) SELECT g % 3 + 1, g * 10, 'n' || g FROM generate_series(1, 20) g;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.invoices TO {app};
CREATE TABLE public.price_list (id bigint PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO public.price_list SELECT g, g * 7 + 1 FROM generate_series(1, 20) g;
GRANT SELECT ON public.price_list TO {app};
-- A copy that keeps the tenant column is a tenant table, protected like the others.
CREATE TABLE public.invoices_2025 AS SELECT tenant_id, id, amount FROM public.invoices;
GRANT SELECT ON public.invoices_2025 TO {app};
-- protect: public.invoices public.invoices_2025
