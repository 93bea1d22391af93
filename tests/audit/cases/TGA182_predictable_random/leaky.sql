-- A protected tenant table whose invite token is drawn from random(), and a function that does the same.
CREATE TABLE public.base (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, token text DEFAULT md5(random()::text));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {app};
-- protect: public.base
CREATE FUNCTION public.new_code() RETURNS text LANGUAGE sql AS $$ SELECT to_char(floor(random() * 1000000), 'FM000000') $$;
