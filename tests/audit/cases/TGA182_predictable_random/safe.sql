-- The same drawn from the server's strong random source.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, token text DEFAULT gen_random_uuid()::text);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
CREATE FUNCTION public.new_code() RETURNS text LANGUAGE sql AS $$ SELECT gen_random_uuid()::text $$;
