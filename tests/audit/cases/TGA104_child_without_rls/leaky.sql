CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE public.t_1 PARTITION OF public.t FOR VALUES FROM (0) TO (1000);
GRANT SELECT ON public.t, public.t_1 TO {app};
-- protect: public.t
