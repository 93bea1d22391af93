CREATE TABLE public.ev (tenant_id bigint NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id))
  PARTITION BY LIST (tenant_id);
CREATE TABLE public.ev_1 PARTITION OF public.ev FOR VALUES IN (1);
CREATE TABLE public.ev_2 PARTITION OF public.ev FOR VALUES IN (2);
INSERT INTO public.ev VALUES (1, 1, 'x'), (2, 2, 'y');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.ev, public.ev_1, public.ev_2 TO {app};
-- protect: public.ev public.ev_1 public.ev_2
