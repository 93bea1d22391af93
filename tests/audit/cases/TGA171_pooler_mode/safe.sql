-- Transaction pooling (tenantguard binds per transaction), the database listed without user=.
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
-- protect: public.t
-- pooler: pool_mode = transaction
-- pooler: server_reset_query = DISCARD ALL
-- pooler-database: {db} = host=127.0.0.1 port=5432 dbname={db}
