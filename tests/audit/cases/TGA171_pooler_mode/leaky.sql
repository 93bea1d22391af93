-- Statement pooling in front of a protected table: a session-level tenant set by one
-- client applies to the next client's statements.
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
-- protect: public.t
-- pooler: pool_mode = statement
